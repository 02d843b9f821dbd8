//! The in-process Kafka for local use: librdkafka's mock cluster, owned by a thread of its own
//! (the mock cluster handle is not `Send`) and stopped when [`EmbeddedKafka`] is dropped.

use std::sync::mpsc;
use std::thread::JoinHandle;

use rdkafka::mocking::MockCluster;

#[derive(Debug, thiserror::Error)]
#[error("embedded Kafka failed to start: {0}")]
pub struct EmbeddedError(String);

#[derive(Debug)]
pub struct EmbeddedKafka {
    bootstrap: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedKafka {
    /// Starts a one-broker cluster with `topics` created, each with `partitions` partitions.
    pub fn start(topics: &[String], partitions: i32) -> Result<EmbeddedKafka, EmbeddedError> {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String, String>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let topics = topics.to_vec();
        let thread = std::thread::Builder::new()
            .name("embedded-kafka".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                for topic in &topics {
                    if let Err(e) = cluster.create_topic(topic, partitions, 1) {
                        let _ = ready_tx.send(Err(format!("topic {topic}: {e}")));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Either a stop message or the sender being dropped ends the cluster.
                let _ = stop_rx.recv();
                drop(cluster);
            })
            .map_err(|e| EmbeddedError(e.to_string()))?;
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| EmbeddedError("the cluster thread ended early".into()))?
            .map_err(EmbeddedError)?;
        Ok(EmbeddedKafka {
            bootstrap,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }
}

impl Drop for EmbeddedKafka {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
