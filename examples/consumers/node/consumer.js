#!/usr/bin/env node
// Prints one line per WhatsApp message and status that qikchat-bridge wrote to Kafka.
//
// Uses only the records' contract (docs/asyncapi.yaml): the `event` and `message-id` headers and
// the JSON body Qikchat sent, which the bridge stores byte for byte.
//
// Environment:
//   KAFKA_BOOTSTRAP_SERVERS  host:port,...               (default localhost:9092)
//   KAFKA_GROUP_ID           consumer group              (default qikchat-example-node)
//   TOPIC_PREFIX             the bridge's --topic-prefix (default empty)
//   MAX_RECORDS              exit 0 after this many records; 0 or unset: run until Ctrl-C/SIGTERM
'use strict';

const { Kafka, logLevel, CompressionTypes, CompressionCodecs } = require('kafkajs');
const lz4 = require('lz4js');

// The bridge does not compress by default, but operators may set compression.type=lz4; KafkaJS
// ships only gzip, so LZ4 is plugged in here (lz4js is pure JavaScript: nothing to compile).
CompressionCodecs[CompressionTypes.LZ4] = () => ({
  async compress(encoder) {
    return Buffer.from(lz4.compress(encoder.buffer));
  },
  async decompress(buffer) {
    return Buffer.from(lz4.decompress(buffer));
  },
});

const IN = 'whatsapp:message:in';
const STATUS = 'whatsapp:message:status';

// A JSON string literal: unambiguous on one line, whatever the customer typed.
const quoted = (text) => JSON.stringify(text);
const isObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);
// Any value as one line of JSON; missing as null, an object or array as `{...}` or `[...]`, since
// JavaScript and Python order an object's keys differently (integer-like ones first here).
const jsonText = (v) => {
  if (v === undefined) return 'null';
  if (Array.isArray(v)) return '[...]';
  if (isObject(v)) return '{...}';
  return JSON.stringify(v);
};
// A body's value inside a printed text: a string as it is, null or missing as nothing, anything
// else as JSON.
const textOf = (v) => (v === undefined || v === null ? '' : typeof v === 'string' ? v : jsonText(v));
// The first value that is a non-empty string (a caption may be missing, empty or not text).
const firstText = (...values) => values.find((v) => typeof v === 'string' && v);
// A body's value as printed: a plain token as it is; anything else (white space, a control
// character such as CR or LF, non-ASCII, empty, missing, not a string) as JSON, so that a line
// never breaks and one field never looks like two.
const PLAIN = /^[A-Za-z0-9+._:@-]+$/;
const field = (v) => {
  if (typeof v === 'string' && PLAIN.test(v)) return v;
  return jsonText(v);
};

// The human-readable part of an incoming message, or undefined (audio, sticker, unknown types).
function messageText(message) {
  const kind = message.type;
  const content = message[kind];
  if (kind === 'contacts' && Array.isArray(content)) {
    const names = content
      .map((c) => (isObject(c) && isObject(c.name) ? c.name.formatted_name : undefined))
      .filter((n) => typeof n === 'string');
    return names.join(', ') || undefined;
  }
  if (!isObject(content)) return undefined;
  switch (kind) {
    case 'text':
      return content.body;
    case 'image':
    case 'video':
    case 'document':
      return firstText(content.caption, content.filename);
    case 'location':
      return firstText(content.name, content.address);
    case 'interactive': {
      const reply = content[content.type];
      return isObject(reply) ? reply.title : undefined;
    }
    case 'button':
      return content.text;
    case 'reaction':
      return content.emoji;
    default:
      return undefined;
  }
}

// One output line for a record, or undefined for events this example does not show.
function describe(headers, body) {
  const payload = isObject(body) ? body.payload : undefined;
  if (!isObject(payload)) return undefined;
  if (headers.event === IN) {
    const message = isObject(payload.message) ? payload.message : {};
    let line = `in  from=${field(message.from)} type=${field(message.type)}`;
    const text = messageText(message);
    if (typeof text === 'string' && text) line += ` text=${quoted(text)}`;
    return line;
  }
  if (headers.event === STATUS) {
    const to = typeof payload.to === 'string' ? payload.to.replace(/^\++/, '') : payload.to;
    // The header when the bridge wrote one; it leaves it out for an id with a control character,
    // which the body still has.
    const id = headers['message-id'] ?? payload.id;
    let line = `status to=${field(to)} status=${field(payload.status)} id=${field(id)}`;
    const errors = payload.errors;
    if (Array.isArray(errors) && isObject(errors[0])) {
      const parts = [textOf(errors[0].code), textOf(errors[0].title)];
      line += ` error=${quoted(parts.filter((p) => p).join(' '))}`;
    }
    return line;
  }
  return undefined;
}

async function main() {
  const brokers = (process.env.KAFKA_BOOTSTRAP_SERVERS || 'localhost:9092').split(',');
  const prefix = process.env.TOPIC_PREFIX || '';
  const maxRecords = Number(process.env.MAX_RECORDS || 0);
  const topics = [`${prefix}whatsapp.message.in`, `${prefix}whatsapp.message.status`];

  // KafkaJS logs info lines to stdout; keep stdout for the records, warnings go to stderr.
  const kafka = new Kafka({ clientId: 'qikchat-example-node', brokers, logLevel: logLevel.WARN });
  const consumer = kafka.consumer({ groupId: process.env.KAFKA_GROUP_ID || 'qikchat-example-node' });

  let seen = 0;
  let stopping = false;
  const stop = async (code) => {
    if (stopping) return;
    stopping = true;
    await consumer.disconnect(); // commits the offsets of what was printed, leaves the group
    process.exit(code);
  };
  process.on('SIGINT', () => stop(0));
  process.on('SIGTERM', () => stop(0));

  // KafkaJS restarts the consumer after a retriable failure itself; any other (a codec this
  // example lacks, say) stops it for good, while the process would go on doing nothing.
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    if (payload.restart) return;
    console.error(`consumer stopped: ${payload.error}`);
    stop(1);
  });
  await consumer.connect();
  // A new group starts at the beginning of both topics; a known one where it left off.
  await consumer.subscribe({ topics, fromBeginning: true });
  await consumer.run({
    // Returning from the handler commits the record (KafkaJS resolves its offset), so every
    // record handed over is handled, also while stopping: returning early would acknowledge
    // one never processed. A throw (a bug, a failed write in a copy of this) commits nothing,
    // and KafkaJS hands the record over again.
    eachMessage: async ({ topic, partition, message }) => {
      seen += 1;
      const headers = {};
      for (const [name, raw] of Object.entries(message.headers || {})) {
        // Other producers may write a header twice (an array) or without a value (null).
        const value = Array.isArray(raw) ? raw[0] : raw;
        if (value !== undefined && value !== null) headers[name] = Buffer.from(value).toString('utf8');
      }
      let body;
      try {
        if (message.value === null) throw new Error('no value (a tombstone)');
        body = JSON.parse(message.value.toString('utf8'));
      } catch (e) {
        console.error(`skipped ${topic}/${partition}@${message.offset}: ${e.message}`);
        body = undefined;
      }
      const line = body === undefined ? undefined : describe(headers, body);
      if (line !== undefined) process.stdout.write(`${line}\n`);
      if (maxRecords > 0 && seen >= maxRecords) {
        // Take no more of this batch; disconnect outside the handler (it waits for handlers).
        consumer.pause(topics.map((t) => ({ topic: t })));
        setImmediate(() => stop(0));
      }
    },
  });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
