{{/* vim: set filetype=mustache: */}}

{{- define "qikchat-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "qikchat-bridge.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "qikchat-bridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "qikchat-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "qikchat-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "qikchat-bridge.labels" -}}
helm.sh/chart: {{ include "qikchat-bridge.chart" . }}
{{ include "qikchat-bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: webhook-bridge
app.kubernetes.io/part-of: qikchat-bridge
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "qikchat-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "qikchat-bridge.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "qikchat-bridge.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}
{{- end -}}

{{/* The bootstrap servers; rendering fails without them. */}}
{{- define "qikchat-bridge.bootstrapServers" -}}
{{- $servers := .Values.kafka.bootstrapServers | default "" | trim -}}
{{- if not $servers -}}
{{- fail "kafka.bootstrapServers is required (e.g. --set kafka.bootstrapServers=kafka-0.kafka:9092\\,kafka-1.kafka:9092, with the comma escaped for --set). The bridge's embedded Kafka is for local development only and cannot be used from this chart." -}}
{{- end -}}
{{- $servers -}}
{{- end -}}

{{/* Distinct broker ports named in kafka.bootstrapServers, as a JSON list. */}}
{{- define "qikchat-bridge.bootstrapPorts" -}}
{{- $ports := list -}}
{{- range (splitList "," (include "qikchat-bridge.bootstrapServers" .)) -}}
{{- $port := regexFind "[0-9]+$" (trim .) -}}
{{- if $port -}}
{{- $ports = append $ports (atoi $port) -}}
{{- end -}}
{{- end -}}
{{- $ports | uniq | toJson -}}
{{- end -}}

{{/*
The port of kafka.properties' sasl.oauthbearer.token.endpoint.url (443 for https, 80 for http
when the URL names none), or nothing when the property is unset.
*/}}
{{- define "qikchat-bridge.tokenEndpointPort" -}}
{{- with (get (.Values.kafka.properties | default dict) "sasl.oauthbearer.token.endpoint.url") -}}
{{- $url := urlParse (toString .) -}}
{{- $port := regexFind ":[0-9]+$" $url.host | trimPrefix ":" -}}
{{- if $port -}}
{{- $port -}}
{{- else if eq $url.scheme "http" -}}
80
{{- else -}}
443
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
A duration in milliseconds. Accepts the humantime forms the schema allows:
"<n>ms", "<n>s", "<n>m". Of at most 12 digits: atoi and mul work in int64, which a longer
number overflows (307445734561825860m is -16000 ms), and a wrapped value passed the checks
below that the bridge then failed at start-up; no duration a check takes is that long.
*/}}
{{- define "qikchat-bridge.durationMs" -}}
{{- $d := toString . | trim -}}
{{- if regexMatch "[0-9]{13}" $d -}}
{{- fail (printf "invalid duration %q: a number of at most 12 digits (no wait the bridge takes is longer than an hour)" $d) -}}
{{- end -}}
{{- if regexMatch "^[0-9]+ms$" $d -}}
{{- trimSuffix "ms" $d | atoi -}}
{{- else if regexMatch "^[0-9]+s$" $d -}}
{{- mul (trimSuffix "s" $d | atoi) 1000 -}}
{{- else if regexMatch "^[0-9]+m$" $d -}}
{{- mul (trimSuffix "m" $d | atoi) 60000 -}}
{{- else -}}
{{- fail (printf "invalid duration %q: use <n>ms, <n>s or <n>m" $d) -}}
{{- end -}}
{{- end -}}

{{/* terminationGracePeriodSeconds: longer than shutdown delay + drain + producer flush, with
     the spool the replay's cut-off (another flushTimeout), its last probe of the brokers (1 s) and
     closing the file (2 s), and the
     bridge's own waits at exit (6 s: the admin server's drain, the readiness task's metadata
     call, librdkafka's teardown of the flushed producer and the runtime's shutdown, up to 1 s
     each, and 2 s for the file watches and producer replacements to stop). */}}
{{- define "qikchat-bridge.terminationGracePeriodSeconds" -}}
{{- $c := .Values.config -}}
{{- $flush := include "qikchat-bridge.durationMs" $c.flushTimeout | atoi -}}
{{- $ms := add (include "qikchat-bridge.durationMs" $c.shutdownDelay | atoi) (include "qikchat-bridge.durationMs" $c.shutdownGrace | atoi) $flush 6000 -}}
{{- if .Values.persistence.enabled -}}
{{- $ms = add $ms $flush 3000 -}}
{{- end -}}
{{- $minSeconds := div (add $ms 999) 1000 -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- add $minSeconds 10 -}}
{{- else -}}
{{- $v := int .Values.terminationGracePeriodSeconds -}}
{{- if le $v (int $minSeconds) -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be longer than config.shutdownDelay + config.shutdownGrace + config.flushTimeout + 6 s (the bridge's own exit: admin server drain, readiness check, Kafka client teardown, runtime shutdown, file watches; with persistence also + config.flushTimeout + 3 s) = %d s, or Kubernetes kills the bridge before in-flight webhooks are answered and produced" $v (int $minSeconds)) -}}
{{- end -}}
{{- $v -}}
{{- end -}}
{{- end -}}

{{/*
The Service that carries the admin port (/metrics), and so the `job` label Prometheus gives
the bridge's series through the chart's ServiceMonitor (the Prometheus Operator sets job to
the Service's name; the ServiceMonitor sets no jobLabel). Of type ClusterIP the chart's
Service carries it; otherwise the admin port has a ClusterIP Service of its own.
*/}}
{{- define "qikchat-bridge.adminServiceName" -}}
{{- if eq .Values.service.type "ClusterIP" -}}
{{- include "qikchat-bridge.fullname" . -}}
{{- else -}}
{{- /* A Service name has at most 63 characters, as the full name may. */ -}}
{{- printf "%s-admin" (include "qikchat-bridge.fullname" . | trunc 57 | trimSuffix "-") -}}
{{- end -}}
{{- end -}}

{{/* Effective librdkafka security.protocol ("" = librdkafka's default PLAINTEXT). */}}
{{- define "qikchat-bridge.securityProtocol" -}}
{{- $k := .Values.kafka -}}
{{- if $k.securityProtocol -}}
{{- $k.securityProtocol -}}
{{- else if and $k.sasl.enabled $k.tls.enabled -}}
SASL_SSL
{{- else if $k.sasl.enabled -}}
SASL_PLAINTEXT
{{- else if $k.tls.enabled -}}
SSL
{{- end -}}
{{- end -}}

{{/* Name of the Secret holding the Basic-auth credentials file. */}}
{{- define "qikchat-bridge.authSecretName" -}}
{{- if .Values.auth.existingSecret -}}
{{- .Values.auth.existingSecret -}}
{{- else -}}
{{- printf "%s-auth" (include "qikchat-bridge.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "qikchat-bridge.authSecretKey" -}}
{{- if .Values.auth.existingSecret -}}
{{- .Values.auth.existingSecretKey -}}
{{- else -}}
credentials
{{- end -}}
{{- end -}}

{{- define "qikchat-bridge.createAuthSecret" -}}
{{- if and (not .Values.auth.insecureDisableAuth) (not .Values.auth.existingSecret) -}}
true
{{- end -}}
{{- end -}}

{{/*
Content of the chart-managed credentials file. Without configured credentials a random
password is generated once and reused on upgrades (looked up from the live Secret).
A changed Secret reaches running pods through the mounted file (the kubelet updates it within
about a minute, the bridge reads it again within a second), so the pods carry no checksum of it:
that would publish a hash of the password to anyone who can read pods.
*/}}
{{- define "qikchat-bridge.authFileContent" -}}
{{- $content := "" -}}
{{- if .Values.auth.credentials -}}
{{- range $i, $_ := .Values.auth.credentials -}}
{{- if contains ":" .username -}}
{{- fail "auth.credentials: a username must not contain ':'" -}}
{{- end -}}
{{- /* The bridge trims each line of the file and skips one starting with # as a comment (trim
     removes the same Unicode whitespace as its Rust trim). */ -}}
{{- if hasPrefix "#" (trim .username) -}}
{{- fail (printf "auth.credentials: the username %q starts with '#' (after any whitespace, which the bridge trims), so the credentials file reads its line as a comment: that user would be dropped (401), or the bridge finds no credential and crash-loops; choose another username" .username) -}}
{{- end -}}
{{- /* The bridge trims the line (Unicode whitespace, as sprig's trim), so whitespace ending the
     password is dropped and the sender's password no longer matches (401); whitespace starting it
     is kept by the bridge but refused too, as the schema always refused a leading space (a pasted
     one, invisible in the values). Inner whitespace is kept by the bridge and allowed here; a line
     feed would split the line. The schema's pattern says the same; this holds with
     --skip-schema-validation too. The password itself is never printed. */ -}}
{{- $password := toString .password -}}
{{- if contains "\n" $password -}}
{{- fail (printf "auth.credentials[%d].password (user %q) holds a line feed: the credentials file has one USER:PASS per line, so the bridge would read the rest of the password as a line of its own (refused at start-up, so the pod crash-loops, or taken as another credential); remove it" $i (toString .username)) -}}
{{- else if ne (trim $password) $password -}}
{{- fail (printf "auth.credentials[%d].password (user %q) starts or ends with whitespace (Unicode whitespace too, such as a no-break space): the bridge trims each line of the credentials file, so whitespace ending the password is silently dropped and the sender, using the password as written, gets 401 (and whitespace starting it is as likely pasted by mistake); remove it" $i (toString .username)) -}}
{{- end -}}
{{- $content = printf "%s%s:%s\n" $content .username .password -}}
{{- end -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "qikchat-bridge.authSecretName" .) -}}
{{- if and $existing $existing.data (hasKey $existing.data "credentials") -}}
{{- $content = index $existing.data "credentials" | b64dec -}}
{{- else -}}
{{- if hasPrefix "#" (trim .Values.auth.generatedUsername) -}}
{{- fail "auth.generatedUsername starts with '#' (after any whitespace, which the bridge trims), so the credentials file reads its line as a comment (the bridge would find no credential and crash-loop); choose another username" -}}
{{- end -}}
{{- $content = printf "# generated by the qikchat-bridge chart; kept across upgrades\n%s:%s\n" .Values.auth.generatedUsername (randAlphaNum 32) -}}
{{- end -}}
{{- end -}}
{{- $content -}}
{{- end -}}

{{- define "qikchat-bridge.saslSecretName" -}}
{{- if .Values.kafka.sasl.existingSecret -}}
{{- .Values.kafka.sasl.existingSecret -}}
{{- else -}}
{{- printf "%s-kafka-sasl" (include "qikchat-bridge.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "qikchat-bridge.saslPasswordKey" -}}
{{- if .Values.kafka.sasl.existingSecret -}}
{{- .Values.kafka.sasl.passwordKey -}}
{{- else -}}
password
{{- end -}}
{{- end -}}

{{/* Mount points of the secret files inside the container. */}}
{{- define "qikchat-bridge.authDir" -}}/etc/qikchat-bridge/auth{{- end -}}
{{- define "qikchat-bridge.saslDir" -}}/etc/qikchat-bridge/kafka-sasl{{- end -}}
{{- define "qikchat-bridge.tlsDir" -}}/etc/qikchat-bridge/kafka-tls{{- end -}}

{{/* Fail early on combinations the schema cannot express. */}}
{{- define "qikchat-bridge.validate" -}}
{{- $k := .Values.kafka -}}
{{- $_ := include "qikchat-bridge.bootstrapServers" . -}}
{{- include "qikchat-bridge.validateBootstrapServers" . -}}
{{- include "qikchat-bridge.validateCloudeventsSource" . -}}
{{- include "qikchat-bridge.validateVolumes" . -}}
{{- /* Kubernetes names a Service by a DNS-1035 label, stricter than the release names Helm
     takes: `helm install wa.prod` or `1bridge` rendered, then the API server refused the Service. */ -}}
{{- $fullname := include "qikchat-bridge.fullname" . -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $fullname) -}}
{{- fail (printf "the release's full name %q is no DNS-1035 label (lower-case letters, digits and '-', a letter first and none at the end), which Kubernetes requires of a Service's name: choose another release name, or set fullnameOverride" $fullname) -}}
{{- end -}}
{{- /* The label maps are written after the chart's own labels in one mapping: a key of those
     (app.kubernetes.io/name, …) came out twice. Which one counts is up to the reader (the pod's
     two names could leave the Deployment's selector and the Services' ones), so neither is left
     to chance. */ -}}
{{- $chartLabels := include "qikchat-bridge.labels" . | fromYaml -}}
{{- $labelMaps := dict "podLabels" .Values.podLabels "service.labels" .Values.service.labels "serviceMonitor.labels" .Values.serviceMonitor.labels "prometheusRule.labels" .Values.prometheusRule.labels "grafanaDashboard.labels" .Values.grafanaDashboard.labels -}}
{{- range $value := keys $labelMaps | sortAlpha -}}
{{- range $key := keys (get $labelMaps $value | default dict) | sortAlpha -}}
{{- if hasKey $chartLabels $key -}}
{{- fail (printf "%s: %s is a label the chart sets itself (on every object; app.kubernetes.io/name and app.kubernetes.io/instance also select the pods), so it would be written twice; use a key of your own" $value $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* The API server refuses a rolling update that may neither add nor remove a pod. */ -}}
{{- /* Kubernetes reads "00%" as 0% too. */ -}}
{{- if and (not .Values.persistence.enabled) (regexMatch "^0+%?$" (toString .Values.rollingUpdate.maxSurge)) (regexMatch "^0+%?$" (toString .Values.rollingUpdate.maxUnavailable)) -}}
{{- fail "rollingUpdate.maxSurge and rollingUpdate.maxUnavailable are both 0: Kubernetes refuses such a Deployment (a rollout could neither add a pod nor remove one); set one of them above 0" -}}
{{- end -}}
{{- /* kafka.properties names librdkafka knows are lower case (a-z, 0-9, '.', '_', '-'). The
     schema refuses the chart-managed and secret names (patternProperties, case-sensitive, so Helm
     names the key); this refuses the rest here, naming the key too, where a schema propertyNames
     pattern would be reported by Helm 4 at some unrelated path. */ -}}
{{- range $key, $_ := ($k.properties | default dict) -}}
{{- if not (regexMatch "^[a-z][a-z0-9._-]*$" $key) -}}
{{- fail (printf "kafka.properties.%s: not a librdkafka property name, which is lower case (a letter, then letters, digits, '.', '_' and '-'): librdkafka refuses any other name at start-up (the pod would crash-loop), and an upper-case one would slip past the chart's refusal of managed and secret names; write it in lower case" $key) -}}
{{- end -}}
{{- end -}}
{{- /* A URL's password in a property's value (https://user:pass@idp/token, as the OAUTHBEARER
     token endpoint could be given) is a secret to the bridge too (src/kafka_props/passwords.rs
     hides it from its logs and --check-config), but kafka.properties become the pod's
     arguments, readable by anyone who can get the pod. The value is never shown. */ -}}
{{- range $key, $value := ($k.properties | default dict) -}}
{{- if include "qikchat-bridge.hasUrlPassword" $value -}}
{{- fail (printf "kafka.properties.%s holds a URL with a password (user:password@): kafka.properties become the pod's arguments, readable by anyone who can get the pod; give the credential another way (the identity provider's client secret through KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET_FILE), or put the whole value in a Secret and set KAFKA_<NAME>_FILE in extraEnv (the value is not shown)" $key) -}}
{{- end -}}
{{- end -}}
{{- /* config.topics keys are event names as the bridge reads them from BRIDGE_TOPICS
     (src/topics.rs TopicMap::new): the list is split at every ',', each entry at its first '=',
     and an event name must be non-empty and equal to its Rust str::trim (sprig's trim removes the
     same Unicode whitespace). Any other key makes the bridge refuse the list at start-up (the pod
     would crash-loop). Refused here, naming the key, where a schema propertyNames pattern would be
     reported by Helm 4 at some unrelated path; %q shows whitespace the key hides. */ -}}
{{- range $event, $_ := (.Values.config.topics | default dict) -}}
{{- if or (not $event) (contains "," $event) (contains "=" $event) (ne (trim $event) $event) -}}
{{- fail (printf "config.topics.%s: the event name %q is not one the bridge accepts: a key must be non-empty, hold no ',' or '=' (BRIDGE_TOPICS is a comma-separated list of EVENT=TOPIC) and have no whitespace at either end (including Unicode spaces such as the no-break space, which the bridge trims); the bridge refuses such a route at start-up, so the pod would crash-loop. Write the event name exactly as Qikchat sends it" $event $event) -}}
{{- end -}}
{{- end -}}
{{- /* The bridge names every topic config.topicPrefix + its name and refuses a name over Kafka's
     249 characters at start-up (src/topics.rs), its default routes' names included, whatever
     replaces them: a long prefix would make the pod crash-loop. */ -}}
{{- $prefix := .Values.config.topicPrefix | default "" -}}
{{- $names := list "whatsapp.message.in" "whatsapp.message.status" -}}
{{- range $topic := list .Values.config.fallbackTopic .Values.config.deadletterTopic -}}
{{- if $topic -}}{{- $names = append $names $topic -}}{{- end -}}
{{- end -}}
{{- range $_, $topic := (.Values.config.topics | default dict) -}}
{{- if $topic -}}{{- $names = append $names $topic -}}{{- end -}}
{{- end -}}
{{- /* The bridge refuses a dead-letter topic that is also an event's or the fallback's at
     start-up (src/topics.rs: their consumers would read refused bodies, which are no webhook). */ -}}
{{- $dead := .Values.config.deadletterTopic | default "whatsapp.deadletter" -}}
{{- $routes := dict "whatsapp:message:in" "whatsapp.message.in" "whatsapp:message:status" "whatsapp.message.status" -}}
{{- range $event, $topic := (.Values.config.topics | default dict) -}}
{{- if $topic -}}{{- $_ := set $routes $event $topic -}}{{- end -}}
{{- end -}}
{{- range $event, $topic := $routes -}}
{{- if eq $topic $dead -}}
{{- fail (printf "config.deadletterTopic %q is also the topic of the event %q: its consumers would read the bodies the bridge refused, which are no webhook (not JSON, no event); the bridge refuses it at start-up, so the pod would crash-loop: give invalid bodies a topic of their own" $dead $event) -}}
{{- end -}}
{{- end -}}
{{- if eq (.Values.config.fallbackTopic | default "whatsapp.unrouted") $dead -}}
{{- fail (printf "config.deadletterTopic %q is also config.fallbackTopic: its consumers would read the bodies the bridge refused, which are no webhook (not JSON, no event); the bridge refuses it at start-up, so the pod would crash-loop: give invalid bodies a topic of their own" $dead) -}}
{{- end -}}
{{- range $name := $names -}}
{{- $full := len (printf "%s%s" $prefix $name) -}}
{{- if gt $full 249 -}}
{{- fail (printf "config.topicPrefix (%d characters) makes the topic %q a name of %d characters, and Kafka allows at most 249: the bridge refuses it at start-up, so the pod would crash-loop; shorten the prefix" (len $prefix) $name $full) -}}
{{- end -}}
{{- end -}}
{{- if ge (include "qikchat-bridge.durationMs" .Values.config.ackTimeout | atoi) 2000 -}}
{{- fail "config.ackTimeout must be below 2s: Qikchat gives up on a webhook after 2 seconds" -}}
{{- end -}}
{{- $ackMs := include "qikchat-bridge.durationMs" .Values.config.ackTimeout | atoi -}}
{{- if and (gt $ackMs 0) (lt $ackMs 10) -}}
{{- fail "config.ackTimeout must be at least 10ms (the bridge refuses less at start-up: librdkafka's message timeout is in whole milliseconds)" -}}
{{- end -}}
{{- $c := .Values.config -}}
{{- range $name := list "ackTimeout" "headerReadTimeout" "idleTimeout" "bodyReadTimeout" -}}
{{- if eq (include "qikchat-bridge.durationMs" (index $c $name) | atoi) 0 -}}
{{- fail (printf "config.%s must be greater than zero (the bridge refuses 0 at start-up)" $name) -}}
{{- end -}}
{{- end -}}
{{- range $name := list "headerReadTimeout" "idleTimeout" "bodyReadTimeout" "shutdownDelay" "shutdownGrace" "flushTimeout" -}}
{{- if gt (include "qikchat-bridge.durationMs" (index $c $name) | atoi) 3600000 -}}
{{- fail (printf "config.%s must be at most 1h (the bridge refuses longer waits at start-up)" $name) -}}
{{- end -}}
{{- end -}}
{{- /* persistence.writeBudget (BRIDGE_SPOOL_WRITE_BUDGET) as the bridge checks
     --spool-write-budget (src/config/bounds.rs): greater than zero, and leaving Kafka at least
     5 ms of the ack timeout. The bridge refuses such a value at start-up with or without the
     spool, so it is refused here whether or not persistence.enabled renders it (the schema checks
     its form; this holds with --skip-schema-validation too). */ -}}
{{- $budget := .Values.persistence.writeBudget -}}
{{- $budgetMs := 0 -}}
{{- if not (kindIs "invalid" $budget) -}}
{{- if not (regexMatch "^[0-9]+(ms|s|m)$" (toString $budget)) -}}
{{- fail (printf "persistence.writeBudget %q is no duration the chart takes: <n>ms, <n>s or <n>m (e.g. 400ms), or null for the bridge's default" (toString $budget)) -}}
{{- end -}}
{{- $budgetMs = include "qikchat-bridge.durationMs" $budget | atoi -}}
{{- if eq $budgetMs 0 -}}
{{- fail (printf "persistence.writeBudget (%s) must be greater than zero: the bridge refuses 0 at start-up (no time for the spool's write would answer every webhook Kafka is late with 503, as without a spool), so the pod would crash-loop; set null for the bridge's default (250ms, or a quarter of the time left when that is less)" (toString $budget)) -}}
{{- end -}}
{{- if gt $budgetMs (sub $ackMs 5) -}}
{{- fail (printf "persistence.writeBudget (%s) must leave Kafka at least 5ms of config.ackTimeout (%s): at most %dms; the bridge refuses more at start-up, so the pod would crash-loop" (toString $budget) (toString .Values.config.ackTimeout) (sub $ackMs 5)) -}}
{{- end -}}
{{- end -}}
{{- /* The wait left to Kafka, the bridge's own message.timeout.ms (src/delivery.rs kafka_wait,
     in whole ms): the ack timeout, less with persistence the write budget or min(250 ms, a
     quarter of it). librdkafka refuses a linger.ms not below it, and the bridge refuses such a
     linger at start-up unless the operator sets message.timeout.ms too (checked after the walks
     of extraArgs and extraEnv, which may set either). */ -}}
{{- $waitMs := $ackMs -}}
{{- $from := "config.ackTimeout" -}}
{{- $less := "" -}}
{{- if .Values.persistence.enabled -}}
{{- if kindIs "invalid" $budget -}}
{{- $waitMs = ternary (div (mul $ackMs 3) 4) (sub $ackMs 250) (lt $ackMs 1000) -}}
{{- $less = " less the spool's 250ms, or a quarter of it" -}}
{{- else -}}
{{- $waitMs = sub $ackMs $budgetMs -}}
{{- $from = "persistence.writeBudget" -}}
{{- $less = " less persistence.writeBudget" -}}
{{- end -}}
{{- end -}}
{{- /* linger.ms and message.timeout.ms (under any of their names) as the bridge gets them, to
     dict value (the text, "" when it cannot be read at render) and from (where it was set): -X
     wins over a variable and the last -X wins, so kafka.properties (the first -X) are taken
     here, extraArgs' -X over them in their walk below, and extraEnv's KAFKA_* only where no -X
     set the property. Checked against the wait after those walks. */ -}}
{{- $lingerTimes := dict -}}
{{- range $key, $value := (.Values.kafka.properties | default dict) -}}
{{- $name := include "qikchat-bridge.canonicalProperty" $key -}}
{{- if and (has $name (list "linger.ms" "message.timeout.ms")) (not (kindIs "invalid" $value)) -}}
{{- /* As _pod.tpl renders it: an integral float from a values file as an integer. */ -}}
{{- $text := toString $value -}}
{{- if and (kindIs "float64" $value) (eq $value (float64 (int64 $value))) -}}
{{- $text = int64 $value | toString -}}
{{- end -}}
{{- $_ := set $lingerTimes $name (dict "value" $text "from" (printf "kafka.properties' %s" $name)) -}}
{{- end -}}
{{- end -}}
{{- if lt (int64 $c.maxInFlightBytes) (int64 $c.maxBodyBytes) -}}
{{- fail "config.maxInFlightBytes must hold at least one body of config.maxBodyBytes" -}}
{{- end -}}
{{- /* The memory bound of the README's --max-in-flight-bytes row: the bodies, librdkafka's queue
     (queue.buffering.max.kbytes, 64 MiB unless kafka.properties sets it), the connections' HTTP/1
     read buffers (16 KiB each), ~100 MiB for the rest, and with the spool its waiting writes and
     replay's batch. Only the integer limit forms quantityBytes reads; a decimal one (1.5Gi) is
     left to the operator. */ -}}
{{- with (.Values.resources.limits | default dict).memory -}}
{{- if regexMatch "^[0-9]+(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$" (toString .) -}}
{{- $limit := include "qikchat-bridge.quantityBytes" . | atoi -}}
{{- $bodies := add (int64 $c.maxInFlightBytes) (mul (int64 $c.maxInFlight) 65536) -}}
{{- $queue := mul (include "qikchat-bridge.queueBufferingMaxKbytes" $ | atoi) 1024 -}}
{{- $connections := mul (int64 $c.maxConnections) 16384 -}}
{{- /* With the spool: encoded writes waiting for the disk (64 MiB at most) and five times
     replay's batch (at most 8 MiB and one body): replay's peak was measured at about five times
     the batch's bytes (the decoded records, librdkafka's copy and its produce requests). */ -}}
{{- $spool := ternary (add (mul 64 1048576) (mul 5 (add (mul 8 1048576) (int64 $c.maxBodyBytes)))) 0 $.Values.persistence.enabled -}}
{{- $need := add $bodies $queue $connections $spool (mul 100 1048576) -}}
{{- if gt (int64 $need) (int64 $limit) -}}
{{- fail (printf "resources.limits.memory (%s) is below what the bridge may hold: config.maxInFlightBytes + config.maxInFlight x 64 KiB (%d bytes of bodies) + librdkafka's queue (queue.buffering.max.kbytes: %d bytes) + config.maxConnections x 16 KiB of HTTP/1 read buffers (%d bytes)%s + 100 MiB = %d bytes; lower config.maxInFlightBytes, config.maxInFlight or config.maxConnections, or raise the limit" (toString .) (int64 $bodies) (int64 $queue) (int64 $connections) (ternary (printf " + the spool's writes and replay (%d bytes)" (int64 $spool)) "" $.Values.persistence.enabled) (int64 $need)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $k.idempotence (not (has (toString $k.acks) (list "all" "-1"))) -}}
{{- fail (printf "kafka.idempotence needs kafka.acks: all, or librdkafka refuses to start the producer (acks is %v): set kafka.idempotence: false with a weaker acks" $k.acks) -}}
{{- end -}}
{{- /* The bridge turns its default idempotence off for these itself; the chart sets it
     explicitly, so librdkafka would refuse the start: say so at render time instead. */ -}}
{{- if $k.idempotence -}}
{{- $props := $k.properties | default dict -}}
{{- /* Each rule: the property's two names, and the values (from..to) it refuses. */ -}}
{{- $retries := dict "names" (list "retries" "message.send.max.retries") "from" 0 "to" 0 "needs" "retries" -}}
{{- $inFlight := dict "names" (list "max.in.flight" "max.in.flight.requests.per.connection") "from" 6 "to" 2147483647 "needs" "at most 5 requests in flight" -}}
{{- range $rule := list $retries $inFlight -}}
{{- range $name := $rule.names -}}
{{- $v := get $props $name -}}
{{- /* As _pod.tpl renders it: an integral float of a values file or --set-json as an integer
     (toString gives 1000000 as "1e+06", which would be read as 1). */ -}}
{{- $text := toString $v -}}
{{- if and (kindIs "float64" $v) (eq $v (float64 (int64 $v))) -}}
{{- $text = int64 $v | toString -}}
{{- end -}}
{{- $n := include "qikchat-bridge.librdkafkaInt" $text -}}
{{- $i := int64 $n -}}
{{- if and (hasKey $props $name) $n (ge $i (int64 $rule.from)) (le $i (int64 $rule.to)) -}}
{{- fail (printf "kafka.idempotence needs %s, or librdkafka refuses to start the producer (kafka.properties.%s is %v): set kafka.idempotence: false with it" $rule.needs $name $v) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $k.sasl.enabled -}}
{{- if and (not $k.sasl.username) (not (and $k.sasl.existingSecret $k.sasl.usernameKey)) -}}
{{- fail "kafka.sasl.enabled needs kafka.sasl.username, or kafka.sasl.existingSecret with kafka.sasl.usernameKey" -}}
{{- end -}}
{{- if and (not $k.sasl.existingSecret) (not $k.sasl.password) -}}
{{- fail "kafka.sasl.enabled needs kafka.sasl.existingSecret (recommended) or kafka.sasl.password" -}}
{{- end -}}
{{- if and $k.sasl.usernameKey (not $k.sasl.existingSecret) -}}
{{- fail "kafka.sasl.usernameKey needs kafka.sasl.existingSecret" -}}
{{- end -}}
{{- end -}}
{{- $proto := include "qikchat-bridge.securityProtocol" . -}}
{{- if and $k.sasl.enabled (not (hasPrefix "SASL_" $proto)) -}}
{{- fail (printf "kafka.sasl.enabled conflicts with kafka.securityProtocol=%s" $proto) -}}
{{- end -}}
{{- if and $k.tls.enabled (not (has $proto (list "SSL" "SASL_SSL"))) -}}
{{- fail (printf "kafka.tls.enabled conflicts with kafka.securityProtocol=%s" $proto) -}}
{{- end -}}
{{- /* The Secrets are mounted only with the switches on. Under a kafka.securityProtocol that
     already says TLS or SASL (the OAuth 2 set-up sets SASL_SSL without either), a Secret given
     with its switch off was dropped without a word: the brokers' private CA unused (every
     connection fails verification), or no SASL mechanism (librdkafka's GSSAPI, which the
     bridge refuses at start-up). Beside PLAINTEXT the values may stay, switched off. */ -}}
{{- /* Without either switch or kafka.securityProtocol the chart sets no protocol, and extraArgs
     (-X security.protocol=SASL_SSL) or extraEnv (KAFKA_SECURITY_PROTOCOL) may: the Secrets were
     dropped alike. Only a value written there is read (-X wins over the variable, the last -X
     over the others; librdkafka takes it in any case); one from valueFrom or extraEnvFrom is
     left to the operator. */ -}}
{{- $dropProto := $proto -}}
{{- $protoFrom := printf "kafka.securityProtocol is %s" $proto -}}
{{- if not $proto -}}
{{- range .Values.extraEnv -}}
{{- if and (eq (include "qikchat-bridge.envSetting" .name) "security.protocol") (hasKey . "value") (not (hasSuffix "_FILE" .name)) -}}
{{- $dropProto = upper (trim (toString .value)) -}}
{{- $protoFrom = printf "extraEnv's %s is %s" .name (toString .value) -}}
{{- end -}}
{{- end -}}
{{- range $pair := include "qikchat-bridge.kafkaArgPairs" . | fromJsonArray -}}
{{- if and (contains "=" $pair) (eq (include "qikchat-bridge.canonicalProperty" (splitList "=" $pair | first | trim | lower)) "security.protocol") -}}
{{- $value := regexReplaceAll "^[^=]*=" $pair "" -}}
{{- $dropProto = upper (trim $value) -}}
{{- $protoFrom = printf "extraArgs' -X security.protocol is %s" $value -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (not $k.tls.enabled) (has $dropProto (list "SSL" "SASL_SSL")) (or $k.tls.existingSecret $k.tls.certKey $k.tls.keyKey $k.tls.keyPasswordKey) -}}
{{- fail (printf "kafka.tls.existingSecret (or certKey, keyKey, keyPasswordKey) is set and %s, but kafka.tls.enabled is false, so the chart mounts nothing from the Secret: the image's system trust store would verify the brokers and no client certificate would be sent; set kafka.tls.enabled: true (or leave kafka.tls.* empty)" $protoFrom) -}}
{{- end -}}
{{- if and (not $k.sasl.enabled) (hasPrefix "SASL_" $dropProto) (or $k.sasl.existingSecret $k.sasl.password $k.sasl.username $k.sasl.usernameKey) -}}
{{- fail (printf "kafka.sasl.existingSecret, password, username or usernameKey is set and %s, but kafka.sasl.enabled is false, so the chart passes none of them (nor kafka.sasl.mechanism) to the bridge; set kafka.sasl.enabled: true (for OAUTHBEARER leave kafka.sasl.* empty and set KAFKA_SASL_MECHANISM in extraEnv)" $protoFrom) -}}
{{- end -}}
{{- if $k.tls.enabled -}}
{{- if ne (empty $k.tls.certKey) (empty $k.tls.keyKey) -}}
{{- fail "kafka.tls.certKey and kafka.tls.keyKey must be set together (client certificate and its key)" -}}
{{- end -}}
{{- if and (or $k.tls.certKey $k.tls.keyKey $k.tls.keyPasswordKey) (not $k.tls.existingSecret) -}}
{{- fail "kafka.tls.certKey/keyKey/keyPasswordKey need kafka.tls.existingSecret" -}}
{{- end -}}
{{- if and $k.tls.keyPasswordKey (not $k.tls.keyKey) -}}
{{- fail "kafka.tls.keyPasswordKey needs kafka.tls.keyKey" -}}
{{- end -}}
{{- if and $k.tls.existingSecret (not (or $k.tls.caKey $k.tls.certKey)) -}}
{{- fail "kafka.tls.existingSecret is set but neither kafka.tls.caKey nor kafka.tls.certKey names a key in it" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.auth.insecureDisableAuth (or .Values.auth.existingSecret .Values.auth.credentials) -}}
{{- fail "auth.insecureDisableAuth cannot be combined with auth.existingSecret or auth.credentials" -}}
{{- end -}}
{{- if and .Values.auth.existingSecret .Values.auth.credentials -}}
{{- fail "set either auth.existingSecret or auth.credentials, not both" -}}
{{- end -}}
{{- if eq (int .Values.containerPorts.admin) (int .Values.containerPorts.http) -}}
{{- fail (printf "containerPorts.admin (%d) takes the port of containerPorts.http: the bridge refuses an admin listener on the webhook listener's port at start-up, so the pod would crash-loop; give containerPorts.admin a port of its own" (int .Values.containerPorts.admin)) -}}
{{- end -}}
{{- /* Of type ClusterIP one Service carries both ports (see service.yaml), and the API server
     refuses a Service with the same port twice; otherwise the admin port has a Service of its own. */ -}}
{{- if and (eq .Values.service.type "ClusterIP") (eq (int .Values.service.adminPort) (int .Values.service.port)) -}}
{{- fail (printf "service.adminPort (%d) equals service.port: with service.type ClusterIP both are ports of the same Service, which the API server refuses at install; give service.adminPort a port of its own" (int .Values.service.adminPort)) -}}
{{- end -}}
{{- if .Values.autoscaling.enabled -}}
{{- if gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas) -}}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" -}}
{{- end -}}
{{- $as := .Values.autoscaling -}}
{{- /* An HPA without metrics is not one that never scales: Kubernetes gives it an 80% CPU target. */ -}}
{{- if and (kindIs "invalid" $as.targetCPUUtilizationPercentage) (kindIs "invalid" $as.targetMemoryUtilizationPercentage) -}}
{{- fail "autoscaling.enabled needs autoscaling.targetCPUUtilizationPercentage or autoscaling.targetMemoryUtilizationPercentage: with both null the HorizontalPodAutoscaler has no metrics, which Kubernetes silently takes as an 80% CPU target; set a target, or set autoscaling.enabled: false and use replicaCount" -}}
{{- end -}}
{{- /* Utilisation is usage over the container's request (which Kubernetes copies from the limit
     when only that is set): without either the HPA cannot compute it and never scales. */ -}}
{{- $res := .Values.resources | default dict -}}
{{- $requests := $res.requests | default dict -}}
{{- $limits := $res.limits | default dict -}}
{{- range $resource, $target := dict "cpu" $as.targetCPUUtilizationPercentage "memory" $as.targetMemoryUtilizationPercentage -}}
{{- if and (not (kindIs "invalid" $target)) (not (index $requests $resource)) (not (index $limits $resource)) -}}
{{- fail (printf "autoscaling.target%sUtilizationPercentage (%v) needs resources.requests.%s: utilisation is measured against the container's request, so without one the HorizontalPodAutoscaler cannot compute it and never scales on it; set resources.requests.%s, or set the target to null" (ternary "CPU" "Memory" (eq $resource "cpu")) $target $resource $resource) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if .Values.podDisruptionBudget.enabled -}}
{{- $max := .Values.podDisruptionBudget.maxUnavailable -}}
{{- $min := .Values.podDisruptionBudget.minAvailable -}}
{{- if eq (kindIs "invalid" $max) (kindIs "invalid" $min) -}}
{{- fail "podDisruptionBudget: set exactly one of maxUnavailable and minAvailable (the other to null)" -}}
{{- end -}}
{{- /* A budget that allows no eviction at the fewest pods the release runs (replicaCount, or
     autoscaling.minReplicas) blocks every node drain for ever: maxUnavailable 0 (or 0%), or a
     minAvailable of all of them (Kubernetes rounds a percentage up). */ -}}
{{- $replicas := int64 (ternary .Values.autoscaling.minReplicas .Values.replicaCount .Values.autoscaling.enabled) -}}
{{- $allowed := 0 -}}
{{- $setting := "" -}}
{{- if not (kindIs "invalid" $max) -}}
{{- $setting = printf "maxUnavailable %v" $max -}}
{{- $allowed = int64 (include "qikchat-bridge.pdbScaled" (list $max $replicas)) -}}
{{- else -}}
{{- $setting = printf "minAvailable %v" $min -}}
{{- $allowed = sub $replicas (int64 (include "qikchat-bridge.pdbScaled" (list $min $replicas))) -}}
{{- end -}}
{{- if le (int64 $allowed) 0 -}}
{{- fail (printf "podDisruptionBudget: %s allows no pod to be evicted with %d replica(s) (replicaCount, or autoscaling.minReplicas with autoscaling.enabled), so every node drain (cluster upgrades, node pools scaled in) would wait for ever; keep maxUnavailable: 1 (the default; with one replica a drain takes the webhook down until the pod runs elsewhere), run more replicas, or set podDisruptionBudget.enabled: false" $setting $replicas) -}}
{{- end -}}
{{- end -}}
{{- if .Values.ingress.enabled -}}
{{- if not .Values.ingress.hosts -}}
{{- fail "ingress.enabled needs at least one entry in ingress.hosts" -}}
{{- end -}}
{{- /* The schema's host pattern lets an IPv4 address through, which the API server refuses in an
     Ingress rule (Go's net.ParseIP: four decimal octets up to 255, no leading zero). */ -}}
{{- $octet := `(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])` -}}
{{- range .Values.ingress.hosts -}}
{{- if regexMatch (printf `^%s\.%s\.%s\.%s$` $octet $octet $octet $octet) (toString .) -}}
{{- fail (printf "ingress.hosts: %s is an IP address, which Kubernetes refuses as an Ingress host (it must be a DNS name): the install would fail; give the DNS name Qikchat will call" .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $_ := include "qikchat-bridge.terminationGracePeriodSeconds" . -}}
{{- /* When the bridge stops on its own (its spool file failed, a supervised task panicked) no pod
     is deleted, so only the readiness probe takes it out of the Service's endpoints: up to
     periodSeconds x failureThreshold after /readyz turns 503, plus about a second for the
     endpoint change to reach kube-proxy and the Ingress. The bridge closes its port after
     config.shutdownDelay; a shorter delay sends webhooks to a closed port meanwhile. */ -}}
{{- /* A null (or missing) periodSeconds or failureThreshold is left out of the probe, so
     Kubernetes applies its defaults (10 s, 3 failures): the check counts those, not nothing. */ -}}
{{- $ready := (.Values.probes | default dict).readiness | default dict -}}
{{- $period := ternary 10 $ready.periodSeconds (kindIs "invalid" $ready.periodSeconds) | int64 -}}
{{- $failures := ternary 3 $ready.failureThreshold (kindIs "invalid" $ready.failureThreshold) | int64 -}}
{{- $unreadyMs := mul (add (mul $period $failures) 1) 1000 -}}
{{- if lt (include "qikchat-bridge.durationMs" $c.shutdownDelay | atoi) (int64 $unreadyMs) -}}
{{- fail (printf "config.shutdownDelay (%s) must be at least probes.readiness.periodSeconds x probes.readiness.failureThreshold + 1 s (%d s x %d + 1 s = %d ms; a null value counts as Kubernetes' default, periodSeconds 10 and failureThreshold 3): when the bridge stops on its own (a failed spool file, a panicked task) nothing but the readiness probe removes the pod from the Service's endpoints, and the bridge closes its port after config.shutdownDelay, so a shorter delay sends webhooks to a closed port (502 at the Ingress); lengthen the delay or probe readiness more often" (toString $c.shutdownDelay) $period $failures (int64 $unreadyMs)) -}}
{{- end -}}
{{- if .Values.persistence.enabled -}}
{{- $p := .Values.persistence -}}
{{- $sizeBytes := include "qikchat-bridge.quantityBytes" $p.size | atoi -}}
{{- $maxBytes := include "qikchat-bridge.spoolMaxBytes" . | atoi -}}
{{- $minBytes := add (int64 .Values.config.maxBodyBytes) 4096 -}}
{{- if lt $maxBytes (int64 $minBytes) -}}
{{- fail (printf "persistence.maxBytes (%d, from persistence.size when null) must be at least config.maxBodyBytes + 4096 (%d): the spool must hold one body and its headers, or the bridge refuses to start" $maxBytes (int64 $minBytes)) -}}
{{- end -}}
{{- /* The spool's file takes about 1.25 times its records (src/spool/dir.rs warns past that at
     start-up): a larger limit fills the volume first, and a full volume stops the bridge at each
     write (a crash loop) where a full spool only answers 503. */ -}}
{{- if gt (mul $maxBytes 5) (mul $sizeBytes 4) -}}
{{- fail (printf "persistence.maxBytes (%d) is more than 80%% of persistence.size (%s = %d bytes): the spool's file takes about 1.25 times its records, so the volume would fill before the spool's limit, and a full volume makes the pod crash-loop where a full spool only answers 503; set persistence.maxBytes to at most %d (or null, 65%% of the size), or raise persistence.size" $maxBytes (toString $p.size) $sizeBytes (div (mul $sizeBytes 4) 5)) -}}
{{- end -}}
{{- end -}}
{{- /* extraArgs and extraEnv must not bring back what the chart keeps out of the pod spec or
     manages itself: Basic credentials (--auth, BRIDGE_AUTH: visible to anyone who can get the
     pod), the credentials file (--auth-file: mounted from auth.*), the spool (--spool-dir,
     BRIDGE_SPOOL_DIR: only persistence.enabled gives it a volume of its own per pod; elsewhere
     it is on the read-only root filesystem or an ephemeral or shared volume), and librdkafka
     properties the bridge treats as secrets (-X/--kafka-property NAME=VALUE, or KAFKA_<NAME> in
     extraEnv as a plain value or from a ConfigMap; KAFKA_<NAME>_FILE and secretKeyRef are fine). */ -}}
{{- $secretProperty := include "qikchat-bridge.secretPropertyPattern" . -}}
{{- /* Nor may they set again what the chart sets from its values: a flag wins over the chart's
     variable and a second variable replaces it, out of sight of the chart's own checks (the
     grace period from the timeouts, the memory limit from the body limits) or against them
     (--insecure-disable-auth beside the chart's credentials file stops the bridge at start-up). */ -}}
{{- $chartEnv := include "qikchat-bridge.chartEnv" . | fromYaml -}}
{{- $sources := include "qikchat-bridge.envSources" . | fromYaml -}}
{{- $flagVariables := include "qikchat-bridge.flagVariables" . | fromYaml -}}
{{- /* The librdkafka properties the chart's KAFKA_* variables set, under the name the bridge keeps
     each one (qikchat-bridge.envSetting), to the variable: another name of one of them
     (request.required.acks for acks, metadata.broker.list for bootstrap.servers, topic.acks), or
     KAFKA_<NAME> beside the chart's KAFKA_<NAME>_FILE, is the same setting to the bridge, which
     refuses two variables for one property at start-up (the pod crash-loops) and lets -X win over
     the variable out of sight of the chart's checks (kafka.idempotence: false with
     -X request.required.acks=0 runs with acks=0 while the pod shows KAFKA_ACKS=all). */ -}}
{{- $chartProperties := dict -}}
{{- range $variable, $_ := $chartEnv -}}
{{- with include "qikchat-bridge.envSetting" $variable -}}
{{- $_ := set $chartProperties . $variable -}}
{{- end -}}
{{- end -}}
{{- /* kafka.properties become -X arguments as extraArgs' do: the schema refuses the secret and
     chart-managed names (naming the key), and this holds with --skip-schema-validation too, where
     a sasl.password rendered into the pod's arguments and an acks beside the chart's KAFKA_ACKS
     won over it (with idempotence on, librdkafka refused to start). */ -}}
{{- range $key, $_ := ($k.properties | default dict) -}}
{{- if regexMatch $secretProperty $key -}}
{{- fail (printf "kafka.properties.%s is a secret to the bridge (a name containing password, passphrase, private.key, jaas, secret, sasl.oauthbearer.config, sasl.oauthbearer.extensions, ssl.key.pem or ssl_key) and would be readable in the pod's arguments; mount it from a Secret and set KAFKA_<NAME>_FILE in extraEnv" $key) -}}
{{- end -}}
{{- $property := include "qikchat-bridge.canonicalProperty" $key -}}
{{- if hasKey $chartProperties $property -}}
{{- $var := get $chartProperties $property -}}
{{- fail (printf "kafka.properties.%s%s is set by the chart (%s, from %s); set that value instead: -X would win over it out of sight of the chart's checks" $key (ternary "" (printf " (to the bridge: %s)" $property) (eq $key $property)) $var (get $sources $var | default "its values")) -}}
{{- end -}}
{{- end -}}
{{- $closedEgress := and .Values.networkPolicy.enabled .Values.networkPolicy.egress.enabled -}}
{{- $extraArgs := .Values.extraArgs | default list -}}
{{- $kafkaPairs := include "qikchat-bridge.kafkaArgPairs" . | fromJsonArray -}}
{{- range $i, $arg := $extraArgs -}}
{{- $a := toString $arg -}}
{{- $flag := regexFind "^--(auth|auth-file|spool-dir)(=|$)" $a | trimSuffix "=" -}}
{{- if eq $flag "--auth" -}}
{{- fail "extraArgs: --auth puts Basic credentials into the pod's arguments, readable by anyone who can get the pod; use auth.existingSecret or auth.credentials (mounted as a file)" -}}
{{- else if eq $flag "--auth-file" -}}
{{- fail "extraArgs: --auth-file is set by the chart (BRIDGE_AUTH_FILE, mounted from auth.existingSecret or auth.credentials); use those values" -}}
{{- else if eq $flag "--spool-dir" -}}
{{- fail "extraArgs: --spool-dir is refused: use persistence.enabled, which gives every pod a volume of its own (a StatefulSet claim); elsewhere the spool lands on the read-only root filesystem or an ephemeral or shared volume" -}}
{{- end -}}
{{- $long := regexFind "^--[a-z0-9-]+" $a | trimPrefix "--" -}}
{{- if eq $long "insecure-disable-auth" -}}
{{- fail "extraArgs: --insecure-disable-auth is refused: use auth.insecureDisableAuth (beside the chart's credentials file the bridge refuses to start)" -}}
{{- else if $long -}}
{{- $var := get $flagVariables $long | default (printf "BRIDGE_%s" ($long | replace "-" "_" | upper)) -}}
{{- if hasKey $chartEnv $var -}}
{{- fail (printf "extraArgs: --%s is set by the chart (%s, from %s); set that value instead: a flag would win over it out of sight of the chart's checks" $long $var (get $sources $var | default "its values")) -}}
{{- else if eq $var "BRIDGE_SPOOL_WRITE_BUDGET" -}}
{{- fail "extraArgs: --spool-write-budget is refused, though the chart leaves BRIDGE_SPOOL_WRITE_BUDGET unset here: set persistence.writeBudget (rendered with persistence.enabled), which the chart checks against config.ackTimeout; a flag would pass that check (without the spool it does nothing)" -}}
{{- end -}}
{{- end -}}
{{- $pair := index $kafkaPairs $i -}}
{{- $name := splitList "=" $pair | first | trim -}}
{{- if and $name (include "qikchat-bridge.hasUrlPassword" $pair) -}}
{{- fail (printf "extraArgs: the librdkafka property %s holds a URL with a password (user:password@), which would be readable in the pod's arguments; put the value in a Secret and set KAFKA_<NAME>_FILE in extraEnv (the value is not shown)" $name) -}}
{{- end -}}
{{- if and $name (regexMatch $secretProperty (lower $name)) -}}
{{- fail (printf "extraArgs: the librdkafka property %s is a secret to the bridge (a name containing password, passphrase, private.key, jaas, secret, sasl.oauthbearer.config, sasl.oauthbearer.extensions, ssl.key.pem or ssl_key) and would be readable in the pod's arguments; mount it from a Secret and set KAFKA_<NAME>_FILE in extraEnv" $name) -}}
{{- end -}}
{{- /* The name the bridge keeps the property under (lower-cased as the variables' names are:
     an upper-case -X ACKS is refused too rather than left to fail at start-up). */ -}}
{{- $property := include "qikchat-bridge.canonicalProperty" (lower $name) -}}
{{- if and (eq $property "sasl.oauthbearer.token.endpoint.url") $closedEgress -}}
{{- fail (printf "extraArgs: %s is given here, but the NetworkPolicy opens the token endpoint's port only for kafka.properties' sasl.oauthbearer.token.endpoint.url: set it there, or the bridge never gets a token" $name) -}}
{{- end -}}
{{- if and $property (hasKey $chartProperties $property) -}}
{{- $var := get $chartProperties $property -}}
{{- fail (printf "extraArgs: the librdkafka property %s%s is set by the chart (%s, from %s); set that value instead: -X would win over it out of sight of the chart's checks" $name (ternary "" (printf " (to the bridge: %s)" $property) (eq $name $property)) $var (get $sources $var | default "its values")) -}}
{{- end -}}
{{- /* Under the name the bridge keeps it (not lower-cased: librdkafka refuses -X LINGER.MS as an
     unknown property, not as a linger). */ -}}
{{- $kept := include "qikchat-bridge.canonicalProperty" $name -}}
{{- if and (has $kept (list "linger.ms" "message.timeout.ms")) (contains "=" $pair) -}}
{{- $_ := set $lingerTimes $kept (dict "value" (regexReplaceAll "^[^=]*=" $pair "") "from" (printf "extraArgs' -X %s" $name)) -}}
{{- end -}}
{{- end -}}
{{- /* The librdkafka properties extraEnv's own KAFKA_* entries set (qikchat-bridge.envSetting, as
     the bridge keeps them), to the entry, for the refusal of a second entry for one of them. */ -}}
{{- $extraProperties := dict -}}
{{- $extraNames := dict -}}
{{- range .Values.extraEnv -}}
{{- $property := include "qikchat-bridge.envProperty" .name -}}
{{- $plain := or (hasKey . "value") (and .valueFrom (not .valueFrom.secretKeyRef)) -}}
{{- if and $property (hasKey . "value") (include "qikchat-bridge.hasUrlPassword" .value) -}}
{{- fail (printf "extraEnv: %s holds a URL with a password (user:password@) as a plain value, readable by anyone who can get the pod; set %s_FILE to a file from a mounted Secret, or take it from a Secret with valueFrom.secretKeyRef (the value is not shown)" .name .name) -}}
{{- end -}}
{{- if and $property (regexMatch $secretProperty $property) $plain -}}
{{- fail (printf "extraEnv: %s sets the librdkafka property %s, a secret to the bridge (a name containing password, passphrase, private.key, jaas, secret, sasl.oauthbearer.config, sasl.oauthbearer.extensions, ssl.key.pem or ssl_key), %s; use kafka.sasl.* and kafka.tls.* for SASL and TLS credentials, or mount a Secret (extraVolumes, extraVolumeMounts) and set %s_FILE to the file (read again when the Secret rotates), or take it from a Secret with valueFrom.secretKeyRef" .name $property (ternary "as a plain value, readable by anyone who can get the pod" "from something other than a Secret (valueFrom without secretKeyRef)" (hasKey . "value")) .name) -}}
{{- end -}}
{{- if eq .name "BRIDGE_AUTH" -}}
{{- fail "extraEnv: BRIDGE_AUTH puts Basic credentials into the pod spec; use auth.existingSecret or auth.credentials (mounted as a file)" -}}
{{- else if eq .name "BRIDGE_SPOOL_DIR" -}}
{{- fail "extraEnv: BRIDGE_SPOOL_DIR is refused: use persistence.enabled, which gives every pod a volume of its own (a StatefulSet claim); elsewhere the spool lands on the read-only root filesystem or an ephemeral or shared volume" -}}
{{- else if eq .name "BRIDGE_INSECURE_DISABLE_AUTH" -}}
{{- /* Refused whatever auth.insecureDisableAuth is, as --insecure-disable-auth in extraArgs:
     beside the chart's credentials file the bridge refuses to start. */ -}}
{{- fail "extraEnv: BRIDGE_INSECURE_DISABLE_AUTH is refused: use auth.insecureDisableAuth (beside the chart's credentials file the bridge refuses to start)" -}}
{{- else if hasKey $chartEnv .name -}}
{{- fail (printf "extraEnv: %s is set by the chart (from %s); set that value instead: a second entry would replace it out of sight of the chart's checks" .name (get $sources .name | default "its values")) -}}
{{- else if eq .name "BRIDGE_SPOOL_WRITE_BUDGET" -}}
{{- fail "extraEnv: BRIDGE_SPOOL_WRITE_BUDGET is refused, though the chart leaves it unset here: set persistence.writeBudget (rendered with persistence.enabled), which the chart checks against config.ackTimeout; an entry would pass that check (without the spool it does nothing)" -}}
{{- else -}}
{{- $property := include "qikchat-bridge.envSetting" .name -}}
{{- /* Only where no -X set it (-X wins over the variable). A valueFrom entry, or a _FILE one
     (a path), cannot be read at render: its value is left "", so the linger is left to the bridge
     (and such a message.timeout.ms is still the operator's own, which the bridge does not check). */ -}}
{{- if and (has $property (list "linger.ms" "message.timeout.ms")) (not (hasKey $lingerTimes $property)) -}}
{{- $literal := and (hasKey . "value") (not (hasSuffix "_FILE" .name)) -}}
{{- $_ := set $lingerTimes $property (dict "value" (ternary (toString .value) "" $literal) "from" (printf "extraEnv's %s" .name)) -}}
{{- end -}}
{{- if and (eq $property "sasl.oauthbearer.token.endpoint.url") $closedEgress -}}
{{- fail (printf "extraEnv: %s sets sasl.oauthbearer.token.endpoint.url, but the NetworkPolicy opens the token endpoint's port only for kafka.properties' one: set it there, or the bridge never gets a token" .name) -}}
{{- end -}}
{{- if and $property (hasKey $chartProperties $property) -}}
{{- $var := get $chartProperties $property -}}
{{- fail (printf "extraEnv: %s sets the librdkafka property %s, which the chart sets (%s, from %s); set that value instead: the bridge refuses two variables for one property at start-up, so the pod would crash-loop" .name $property $var (get $sources $var | default "its values")) -}}
{{- end -}}
{{- /* Two entries for one property the chart leaves unset: under two names of it
     (KAFKA_LINGER_MS and its alias KAFKA_QUEUE_BUFFERING_MAX_MS), or as KAFKA_<NAME> and
     KAFKA_<NAME>_FILE, the bridge refuses both at start-up (src/kafka_props.rs overrides: "both
     set"), so the pod would crash-loop; under one name twice, the kubelet passes the bridge only
     the last, so the first is dropped out of sight. (Two -X flags for one property are left alone:
     the bridge takes the last, as it does any repeated flag.) */ -}}
{{- if $property -}}
{{- $name := .name -}}
{{- with get $extraProperties $property -}}
{{- if eq . $name -}}
{{- fail (printf "extraEnv: %s is given twice: the kubelet passes only the last entry to the bridge, so the first is dropped out of sight (it sets the librdkafka property %s); keep one" $name $property) -}}
{{- else -}}
{{- fail (printf "extraEnv: %s and %s both set the librdkafka property %s (to the bridge one property, under an alias or as a _FILE twin): the bridge refuses two variables for one property at start-up, so the pod would crash-loop; keep one of the two" . $name $property) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $extraProperties $property $name -}}
{{- end -}}
{{- /* Any other name twice (TZ, say): the same, the first dropped unseen. */ -}}
{{- if hasKey $extraNames .name -}}
{{- fail (printf "extraEnv: %s is given twice: the kubelet passes only the last entry to the bridge, so the first is dropped out of sight; keep one" .name) -}}
{{- end -}}
{{- $_ := set $extraNames .name true -}}
{{- end -}}
{{- end -}}
{{- /* librdkafka refuses a linger.ms not below message.timeout.ms. Without the operator's own
     message.timeout.ms that is the wait left to Kafka (above), and the bridge refuses such a linger
     at start-up naming what the wait comes from; with it, librdkafka refuses it when the bridge
     makes its producer at start-up (0 is librdkafka's "no limit"). Either way the pod would
     crash-loop. Both are read as librdkafka reads them (librdkafkaFloat, librdkafkaInt): a
     decimal-only reading let "1.5e3", " 1500", "+1500", "0x5DC" or "1500ms" (all 1500 to
     librdkafka) through, and a timeout of "1500.0", "01750" (octal 1000) or " 1000". Values not
     read at render (valueFrom, _FILE, text librdkafka refuses for itself) are left to the bridge. */ -}}
{{- $linger := get $lingerTimes "linger.ms" | default dict -}}
{{- $timeout := get $lingerTimes "message.timeout.ms" -}}
{{- $lingerRead := include "qikchat-bridge.librdkafkaFloat" ($linger.value | default "") -}}
{{- if $lingerRead -}}
{{- $shown := ternary $linger.value (printf "%s, to librdkafka %s" $linger.value $lingerRead) (eq $linger.value $lingerRead) -}}
{{- $nan := eq $lingerRead "nan" -}}
{{- /* The bridge's own check (src/config.rs lingers_past_the_wait) runs where message.timeout.ms
     is its own, or set to the same text, and compares the linger as librdkafka writes it back
     (printf's %g, six significant digits: 1499.999 is 1500 there) or NaN, which it refuses. */ -}}
{{- $refused := false -}}
{{- if or (not $timeout) (eq ($timeout.value | default "") (toString $waitMs)) -}}
{{- $seen := 0.0 -}}
{{- if not $nan -}}
{{- $seen = printf "%.6g" (float64 $lingerRead) | float64 -}}
{{- end -}}
{{- $refused = or $nan (ge $seen (float64 $waitMs)) -}}
{{- end -}}
{{- if not $timeout -}}
{{- if $refused -}}
{{- fail (printf "%s (%s) is not below the %dms the bridge leaves Kafka (its message.timeout.ms: config.ackTimeout%s), which librdkafka refuses: the bridge refuses it at start-up, so the pod would crash-loop; lower linger.ms, or leave Kafka more of the ack timeout (%s)" $linger.from $shown $waitMs $less $from) -}}
{{- end -}}
{{- else -}}
{{- $timeoutRead := include "qikchat-bridge.librdkafkaInt" ($timeout.value | default "") -}}
{{- /* 0 is no limit; below it, or past a C int, librdkafka refuses it for itself. */ -}}
{{- if and $timeoutRead (gt (int64 $timeoutRead) 0) (not $nan) -}}
{{- $refused = or $refused (ge (float64 $lingerRead) (float64 $timeoutRead)) -}}
{{- end -}}
{{- if $refused -}}
{{- $timeoutShown := ternary $timeout.value (printf "%s, to librdkafka %s" $timeout.value $timeoutRead) (eq $timeout.value $timeoutRead) -}}
{{- fail (printf "%s (%s) is not below %s (%s), which librdkafka refuses when the bridge makes its producer at start-up, so the pod would crash-loop; lower linger.ms, or raise message.timeout.ms" $linger.from $shown $timeout.from $timeoutShown) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* The PrometheusRule's QikchatBridgeNoReadyInstance looks for this release's series by the
     job label the chart's ServiceMonitor gives them; scraped some other way (or with the job
     relabelled), the selector matches nothing and the critical alert fires for ever. Only that
     alert uses the job: with it in prometheusRule.disabledAlerts (or no PrometheusRule) none is
     needed. */ -}}
{{- if and .Values.prometheusRule.enabled (not .Values.prometheusRule.job) (not (has "QikchatBridgeNoReadyInstance" (.Values.prometheusRule.disabledAlerts | default list))) -}}
{{- if not .Values.serviceMonitor.enabled -}}
{{- fail "prometheusRule.enabled needs serviceMonitor.enabled, or prometheusRule.job set to the job label your own scrape configuration (a PodMonitor, annotations) gives the bridge's series: QikchatBridgeNoReadyInstance looks for absent(qikchat_bridge_ready{namespace, job}) and would otherwise fire for ever" -}}
{{- end -}}
{{- range .Values.serviceMonitor.relabelings -}}
{{- if eq (toString (.targetLabel | default "")) "job" -}}
{{- fail "serviceMonitor.relabelings rewrite the job label: set prometheusRule.job to the job they give the bridge's series, which QikchatBridgeNoReadyInstance looks for (absent(qikchat_bridge_ready{namespace, job}))" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* Secret volumes are mounted with mode 0440, owned by root and the fsGroup: without an
     fsGroup the non-root user cannot read them (nor write the spool volume) and the bridge
     exits at start-up, over and over. */ -}}
{{- $psc := .Values.podSecurityContext -}}
{{- if and (kindIs "invalid" $psc.fsGroup) (not (kindIs "invalid" $psc.runAsUser)) -}}
{{- $needs := list -}}
{{- if not .Values.auth.insecureDisableAuth -}}
{{- $needs = append $needs "the Basic-auth credentials Secret (auth)" -}}
{{- end -}}
{{- if $k.sasl.enabled -}}
{{- $needs = append $needs "the SASL password Secret (kafka.sasl.enabled)" -}}
{{- end -}}
{{- if and $k.tls.enabled $k.tls.existingSecret -}}
{{- $needs = append $needs "the TLS Secret (kafka.tls.existingSecret)" -}}
{{- end -}}
{{- if .Values.persistence.enabled -}}
{{- $needs = append $needs "the spool volume (persistence.enabled), which must also be writable" -}}
{{- end -}}
{{- with $needs -}}
{{- fail (printf "podSecurityContext.fsGroup is required when podSecurityContext.runAsUser is set and the pod mounts %s: Secret volumes are mounted with mode 0440 owned by root and the fsGroup (and the spool volume is made writable for the fsGroup), so without fsGroup the non-root user cannot read them and the bridge crash-loops at start-up (on platforms that assign the user and fsGroup, such as OpenShift, set runAsUser, runAsGroup and fsGroup all to null)" (join ", " .)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The workload kind: a StatefulSet when every pod needs its own spool volume. */}}
{{- define "qikchat-bridge.workloadKind" -}}
{{- if .Values.persistence.enabled -}}
StatefulSet
{{- else -}}
Deployment
{{- end -}}
{{- end -}}

{{/*
Bytes of a Kubernetes quantity in the forms the schema allows: an integer with an optional
binary (Ki, Mi, Gi, Ti, Pi) or decimal (k, M, G, T, P) suffix.
*/}}
{{- define "qikchat-bridge.quantityBytes" -}}
{{- $q := toString . | trim -}}
{{- if not (regexMatch "^[0-9]+(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$" $q) -}}
{{- fail (printf "invalid quantity %q: use an integer with an optional suffix Ki, Mi, Gi, Ti, Pi, k, M, G, T or P" $q) -}}
{{- end -}}
{{- $n := regexFind "^[0-9]+" $q | atoi -}}
{{- $suffix := regexFind "[A-Za-z]+$" $q -}}
{{- $factors := dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" (mul 1073741824 1024) "Pi" (mul 1073741824 1048576) "k" 1000 "M" 1000000 "G" 1000000000 "T" (mul 1000000000 1000) "P" (mul 1000000000 1000000) -}}
{{- mul $n (index $factors $suffix) -}}
{{- end -}}

{{/*
BRIDGE_SPOOL_MAX_BYTES: persistence.maxBytes, or 65% of persistence.size. The rest is headroom
for the database file's own overhead and free pages, measured at about 1.24x the records' bytes
by `cargo run --release --example spool_throughput` (it prints the file's size for the records'):
that is ~81% of the volume for a full spool, leaving room for the filesystem's own metadata
(ext4's journal and inode tables take ~5%), for a file that grows more under append/delete
churn or with large bodies than in that one-pass measurement, and for a corrupt file moved
aside (spool.redb.unreadable-*), which stays on the volume uncounted.
*/}}
{{- define "qikchat-bridge.spoolMaxBytes" -}}
{{- $p := .Values.persistence -}}
{{- if not (kindIs "invalid" $p.maxBytes) -}}
{{- int64 $p.maxBytes -}}
{{- else -}}
{{- div (mul (include "qikchat-bridge.quantityBytes" $p.size | atoi) 65) 100 -}}
{{- end -}}
{{- end -}}

{{/*
The librdkafka properties the bridge treats as secrets, as a regular expression over the
name: src/kafka_props/redact.rs is_secret (a name containing any of these). values.schema.json
refuses the same names in kafka.properties; CI checks both against is_secret.
*/}}
{{- define "qikchat-bridge.secretPropertyPattern" -}}
(password|passphrase|private\.key|jaas|secret|sasl\.oauthbearer\.config|sasl\.oauthbearer\.extensions|ssl\.key\.pem|ssl_key)
{{- end -}}

{{/*
The librdkafka property a KAFKA_* environment variable sets, as the bridge maps it
(src/kafka_props/names.rs env_to_property, after the filters of kafka_props.rs overrides):
"" for a name it does not read as a property with a value of its own (not KAFKA_*,
KAFKA_BOOTSTRAP_SERVERS, a Kubernetes service link, a *_FILE variable, whose value is a path
the property is read from, or a run of four or more underscores, which the bridge refuses).
Otherwise, after KAFKA_: "___" is "-", "__" is "_", "_" is ".", lower-cased.
*/}}
{{- define "qikchat-bridge.envProperty" -}}
{{- $name := toString . -}}
{{- $serviceLink := or (hasSuffix "_PORT" $name) (hasSuffix "_SERVICE_HOST" $name) (contains "_SERVICE_PORT" $name) (regexMatch "_PORT_[0-9]+_(TCP|UDP|SCTP)" $name) -}}
{{- if and (hasPrefix "KAFKA_" $name) (ne $name "KAFKA_") (ne $name "KAFKA_BOOTSTRAP_SERVERS") (not $serviceLink) (not (hasSuffix "_FILE" $name)) (not (contains "____" $name)) -}}
{{- trimPrefix "KAFKA_" $name | lower | replace "___" "-" | replace "__" "\x00" | replace "_" "." | replace "\x00" "_" -}}
{{- end -}}
{{- end -}}

{{/*
librdkafka's second names for one property, to the name the bridge keeps it under: exactly
src/kafka_props/names.rs ALIASES (CI checks that the lists agree).
*/}}
{{- define "qikchat-bridge.propertyAliases" -}}
metadata.broker.list: bootstrap.servers
delivery.timeout.ms: message.timeout.ms
queue.buffering.max.ms: linger.ms
compression.codec: compression.type
request.required.acks: acks
max.in.flight.requests.per.connection: max.in.flight
message.send.max.retries: retries
sasl.mechanisms: sasl.mechanism
sasl.oauthbearer.client.credentials.client.secret: sasl.oauthbearer.client.secret
sasl.oauthbearer.client.credentials.client.id: sasl.oauthbearer.client.id
{{- end -}}

{{/*
The producer's topic-level properties, which librdkafka also takes with a "topic." prefix:
exactly src/kafka_props/names.rs TOPIC_LEVEL (CI checks that the lists agree).
*/}}
{{- define "qikchat-bridge.topicLevelProperties" -}}
- acks
- request.timeout.ms
- message.timeout.ms
- queuing.strategy
- produce.offset.report
- partitioner
- compression.type
- compression.level
- msg_order_cmp
{{- end -}}

{{/*
The name the bridge keeps a librdkafka property under (src/kafka_props/names.rs canonical):
an alias as its name (propertyAliases), and "topic." before a topic-level property (after its
alias) dropped; other names, such as the global topic.metadata.refresh.interval.ms, as they are.
Two names of one property are one setting to the bridge, so the chart compares these.
*/}}
{{- define "qikchat-bridge.canonicalProperty" -}}
{{- $aliases := include "qikchat-bridge.propertyAliases" . | fromYaml -}}
{{- $name := toString . -}}
{{- $kept := get $aliases $name | default $name -}}
{{- if hasPrefix "topic." $name -}}
{{- $rest := trimPrefix "topic." $name -}}
{{- $rest = get $aliases $rest | default $rest -}}
{{- if has $rest (include "qikchat-bridge.topicLevelProperties" . | fromYamlArray) -}}
{{- $kept = $rest -}}
{{- end -}}
{{- end -}}
{{- $kept -}}
{{- end -}}

{{/*
A floating-point property's text as librdkafka reads it (C's strtod: leading white space, a sign,
the longest number that starts it, the rest ignored), as a number the chart compares, "nan", or
"" where the chart leaves it to the bridge: text librdkafka refuses, a negative or infinite value
(out of range: refused for itself).
*/}}
{{- define "qikchat-bridge.librdkafkaFloat" -}}
{{- $text := regexReplaceAll "^[ \\t\\n\\v\\f\\r]+" (toString .) "" -}}
{{- if regexMatch "^[+-]?(?i:nan)" $text -}}
nan
{{- else if regexMatch "^\\+?0[xX]" $text -}}
{{- /* Go reads a hexadecimal float only with its binary exponent: p0 where it has none. */ -}}
{{- $hex := regexFind "^0[xX]([0-9a-fA-F]+\\.?[0-9a-fA-F]*|\\.[0-9a-fA-F]+)([pP][+-]?[0-9]+)?" (trimPrefix "+" $text) -}}
{{- if $hex -}}
{{- float64 (ternary $hex (printf "%sp0" $hex) (regexMatch "[pP]" $hex)) -}}
{{- end -}}
{{- else -}}
{{- $number := regexFind "^\\+?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][+-]?[0-9]+)?" $text -}}
{{- if $number -}}
{{- float64 (trimPrefix "+" $number) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The KEY=VALUE each of extraArgs gives librdkafka, as JSON, one string an argument ("" for one that
gives none): -X KEY=VALUE and --kafka-property KEY=VALUE (at the -X), -XKEY=VALUE, -X=KEY=VALUE
and --kafka-property=KEY=VALUE, as the bridge's clap reads them.
*/}}
{{- define "qikchat-bridge.kafkaArgPairs" -}}
{{- $args := .Values.extraArgs | default list -}}
{{- $pairs := list -}}
{{- range $i, $arg := $args -}}
{{- $a := toString $arg -}}
{{- $pair := "" -}}
{{- if or (eq $a "-X") (eq $a "--kafka-property") -}}
{{- if lt (add $i 1) (len $args) -}}
{{- $pair = index $args (add $i 1) | toString -}}
{{- end -}}
{{- else if hasPrefix "--kafka-property=" $a -}}
{{- $pair = trimPrefix "--kafka-property=" $a -}}
{{- else if hasPrefix "-X" $a -}}
{{- $pair = trimPrefix "=" (trimPrefix "-X" $a) -}}
{{- end -}}
{{- $pairs = append $pairs $pair -}}
{{- end -}}
{{- toJson $pairs -}}
{{- end -}}

{{/*
An integer property's text as librdkafka reads it, as a decimal number, or "" where no number
starts it. C's strtol with base 0: after blanks, a sign and a hex, octal or decimal number,
whatever follows (spf13/cast parses that prefix alike). librdkafka keeps strtol's long as an int,
(int)strtol(...): its low 32 bits, signed (4294967296 is 0, -4294967290 is 6, 2147483648 is
negative); beyond a long, strtol gives LONG_MAX (-1 as an int) or LONG_MIN (0), where int64 gives 0.
*/}}
{{- define "qikchat-bridge.librdkafkaInt" -}}
{{- $n := regexFind "^[ \\t\\n\\v\\f\\r]*[-+]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)" (toString .) | trim -}}
{{- if $n -}}
{{- $i := int64 $n -}}
{{- if and (eq $i 0) (not (regexMatch "^[-+]?(0[xX])?0+$" $n)) -}}
{{- $i = ternary 0 -1 (hasPrefix "-" $n) -}}
{{- end -}}
{{- $i = mod (add (mod $i 4294967296) 4294967296) 4294967296 -}}
{{- if ge $i 2147483648 -}}
{{- $i = sub $i 4294967296 -}}
{{- end -}}
{{- $i -}}
{{- end -}}
{{- end -}}

{{/*
The librdkafka property a variable sets, under the name the bridge keeps it (canonicalProperty),
or "" for one that sets none: KAFKA_<NAME> and KAFKA_<NAME>_FILE alike (the file holds the
value; the bridge refuses the two together), and KAFKA_BOOTSTRAP_SERVERS (and its _FILE twin)
as bootstrap.servers.
*/}}
{{- define "qikchat-bridge.envSetting" -}}
{{- $name := trimSuffix "_FILE" (toString .) -}}
{{- $property := ternary "bootstrap.servers" (include "qikchat-bridge.envProperty" $name) (eq $name "KAFKA_BOOTSTRAP_SERVERS") -}}
{{- if $property -}}
{{- include "qikchat-bridge.canonicalProperty" $property -}}
{{- end -}}
{{- end -}}

{{/*
The flags whose variable is not BRIDGE_<FLAG> (upper-cased, "-" as "_"), to their variable, for
extraArgs' refusal of a flag the chart sets: CI checks against the binary's --help
([env: NAME]) that every such flag is here.
*/}}
{{- define "qikchat-bridge.flagVariables" -}}
kafka-brokers: KAFKA_BOOTSTRAP_SERVERS
topic: BRIDGE_TOPICS
{{- end -}}

{{/* Pods a PodDisruptionBudget's count or percentage stands for out of N: (list VALUE N),
     a percentage rounded up as Kubernetes does. */}}
{{- define "qikchat-bridge.pdbScaled" -}}
{{- $v := toString (index . 0) -}}
{{- $n := int64 (index . 1) -}}
{{- if hasSuffix "%" $v -}}
{{- div (add (mul (trimSuffix "%" $v | atoi) $n) 99) 100 -}}
{{- else -}}
{{- atoi $v -}}
{{- end -}}
{{- end -}}

{{/*
librdkafka's queue.buffering.max.kbytes: from kafka.properties when set there (rendered as in
_pod.tpl: an integral float from a values file as an integer), else the bridge's default: 65536,
or one record of the largest size (config.maxBodyBytes + 64 KiB) when that is more.
*/}}
{{- define "qikchat-bridge.queueBufferingMaxKbytes" -}}
{{- $props := .Values.kafka.properties | default dict -}}
{{- $v := index $props "queue.buffering.max.kbytes" -}}
{{- if kindIs "invalid" $v -}}
{{- $record := max 1000000 (add (int64 .Values.config.maxBodyBytes) 65536) -}}
{{- max 65536 (div (add $record 1023) 1024) -}}
{{- else -}}
{{- $text := toString $v -}}
{{- if and (kindIs "float64" $v) (eq $v (float64 (int64 $v))) -}}
{{- $text = int64 $v | toString -}}
{{- end -}}
{{- if not (regexMatch "^[0-9]+$" $text) -}}
{{- fail (printf "kafka.properties.queue.buffering.max.kbytes must be a whole number of KiB, not %q" $text) -}}
{{- end -}}
{{- $text -}}
{{- end -}}
{{- end -}}

{{/* The names of the variables the chart itself sets in the bridge's container (not extraEnv's),
     as a YAML map of name to true: the pod template rendered, less extraEnv's entries at the end. */}}
{{- define "qikchat-bridge.chartEnv" -}}
{{- $pod := include "qikchat-bridge.podTemplate" . | fromYaml -}}
{{- $env := (index $pod.spec.containers 0).env | default list -}}
{{- $own := sub (len $env) (len (.Values.extraEnv | default list)) -}}
{{- range $i, $e := $env -}}
{{- if lt $i $own }}
{{ $e.name }}: true
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The values each variable the chart sets comes from, for the messages that refuse setting it
     again in extraArgs or extraEnv. */}}
{{- define "qikchat-bridge.envSources" -}}
BRIDGE_LISTEN: config.listenHost and containerPorts.http
BRIDGE_ADMIN_LISTEN: config.listenHost and containerPorts.admin
BRIDGE_WEBHOOK_PATH: config.webhookPath
BRIDGE_INSECURE_DISABLE_AUTH: auth.insecureDisableAuth
BRIDGE_AUTH_FILE: auth.existingSecret or auth.credentials
BRIDGE_ACK_TIMEOUT: config.ackTimeout
BRIDGE_MAX_BODY_BYTES: config.maxBodyBytes
BRIDGE_MAX_IN_FLIGHT: config.maxInFlight
BRIDGE_MAX_IN_FLIGHT_BYTES: config.maxInFlightBytes
BRIDGE_MAX_CONNECTIONS: config.maxConnections
BRIDGE_SPOOL_DIR: persistence.enabled and persistence.mountPath
BRIDGE_SPOOL_MAX_BYTES: persistence.maxBytes
BRIDGE_REPLAY_MAX_RATE: persistence.replayMaxRate
BRIDGE_SPOOL_WRITE_BUDGET: persistence.writeBudget
BRIDGE_TOPIC_PREFIX: config.topicPrefix
BRIDGE_TOPICS: config.topics
BRIDGE_FALLBACK_TOPIC: config.fallbackTopic
BRIDGE_DEADLETTER_TOPIC: config.deadletterTopic
BRIDGE_KEY_STRATEGY: config.keyStrategy
BRIDGE_HEADER_READ_TIMEOUT: config.headerReadTimeout
BRIDGE_IDLE_TIMEOUT: config.idleTimeout
BRIDGE_BODY_READ_TIMEOUT: config.bodyReadTimeout
BRIDGE_SHUTDOWN_DELAY: config.shutdownDelay
BRIDGE_SHUTDOWN_GRACE: config.shutdownGrace
BRIDGE_FLUSH_TIMEOUT: config.flushTimeout
BRIDGE_LOG_FORMAT: config.logFormat
BRIDGE_LOG_PHONE_NUMBERS: config.logPhoneNumbers
BRIDGE_CLOUDEVENTS: config.cloudevents
BRIDGE_HTTP1_ONLY: config.http1Only
BRIDGE_CLOUDEVENTS_SOURCE: config.cloudeventsSource
RUST_LOG: config.logLevel
KAFKA_BOOTSTRAP_SERVERS: kafka.bootstrapServers
KAFKA_ACKS: kafka.acks
KAFKA_ENABLE_IDEMPOTENCE: kafka.idempotence
KAFKA_SECURITY_PROTOCOL: kafka.securityProtocol, or kafka.sasl.enabled and kafka.tls.enabled
KAFKA_SASL_MECHANISM: kafka.sasl.mechanism
KAFKA_SASL_USERNAME: kafka.sasl.username
KAFKA_SASL_USERNAME_FILE: kafka.sasl.usernameKey
KAFKA_SASL_PASSWORD_FILE: kafka.sasl.*
KAFKA_SSL_CA_LOCATION: kafka.tls.caKey
KAFKA_SSL_CERTIFICATE_LOCATION: kafka.tls.certKey
KAFKA_SSL_KEY_LOCATION: kafka.tls.keyKey
KAFKA_SSL_KEY_PASSWORD_FILE: kafka.tls.keyPasswordKey
{{- end -}}

{{/*
kafka.bootstrapServers entry by entry, as the bridge reads it (src/config/brokers.rs), for what
the schema's host:port pattern lets through and the bridge refuses at start-up (every pod would
crash-loop): user information (user:password@, which librdkafka never reads, and a password
there would be readable in the pod's environment), a `"` or `\` in the host, a port outside 1 to
65535, a scheme librdkafka does not take, or one that is not the security.protocol the chart
sets. An entry is named by its place, never quoted: it may hold a password.
*/}}
{{- define "qikchat-bridge.validateBootstrapServers" -}}
{{- $chartProtocol := include "qikchat-bridge.securityProtocol" . | lower -}}
{{- /* Without one from the chart, librdkafka's default (plaintext) holds unless extraEnv,
     extraEnvFrom or extraArgs may set it. */ -}}
{{- if not $chartProtocol -}}
{{- $elsewhere := or .Values.extraEnvFrom (contains "security.protocol" (toString .Values.extraArgs)) -}}
{{- range .Values.extraEnv -}}
{{- if eq (include "qikchat-bridge.envSetting" .name) "security.protocol" -}}
{{- $elsewhere = true -}}
{{- end -}}
{{- end -}}
{{- if not $elsewhere -}}
{{- $chartProtocol = "plaintext" -}}
{{- end -}}
{{- end -}}
{{- range $i, $entry := splitList "," (include "qikchat-bridge.bootstrapServers" .) -}}
{{- $e := trim $entry -}}
{{- $place := printf "entry %d of kafka.bootstrapServers" (add $i 1) -}}
{{- /* librdkafka skips only spaces before an entry: after a line break or tab the host holds it. */ -}}
{{- if regexMatch "^ *[\\t\\n\\v\\f\\r]" $entry -}}
{{- fail (printf "%s starts with a line break or tab after its comma: librdkafka skips only spaces there, so the host name holds the blank and never resolves (the bridge refuses it at start-up, so the pod would crash-loop); write the list on one line (a folded scalar, >-, joins lines with spaces)" $place) -}}
{{- end -}}
{{- if contains "@" $e -}}
{{- fail (printf "%s holds user information (user:password@), which librdkafka never reads: the bridge refuses it at start-up, so the pod would crash-loop, and a password there is readable in the pod's environment; give credentials through kafka.sasl.* (the value is not shown: it may hold a password)" $place) -}}
{{- end -}}
{{- if regexMatch "[\"\\\\]" $e -}}
{{- fail (printf "%s has a character no host name has (\" or \\): the bridge refuses it at start-up, so the pod would crash-loop" $place) -}}
{{- end -}}
{{- /* librdkafka's port follows the only ':' or ']:'; an unbracketed IPv6 address (fd00::0)
     has none (the default port), as src/config/brokers.rs reads it. */ -}}
{{- $hostPort := regexReplaceAll "^[^:/]*://" $e "" -}}
{{- $hasPort := or (eq (len (splitList ":" $hostPort)) 2) (contains "]:" $hostPort) -}}
{{- $port := regexFind "[0-9]+$" $e | atoi -}}
{{- if and $hasPort (or (lt $port 1) (gt $port 65535)) -}}
{{- fail (printf "%s has the port %d, not a number from 1 to 65535: the bridge refuses it at start-up, so the pod would crash-loop" $place $port) -}}
{{- end -}}
{{- if contains "://" $e -}}
{{- $scheme := splitList "://" $e | first | lower -}}
{{- if not (has $scheme (list "plaintext" "ssl" "sasl_plaintext" "sasl_ssl")) -}}
{{- fail (printf "%s has a scheme librdkafka does not take (it takes plaintext://, ssl://, sasl_plaintext:// and sasl_ssl://, which must be the security protocol): the bridge refuses it at start-up, so the pod would crash-loop" $place) -}}
{{- end -}}
{{- /* Compared only when the protocol is known here (see above). */ -}}
{{- if and $chartProtocol (ne $scheme $chartProtocol) -}}
{{- fail (printf "%s starts with %s://, but security.protocol is %s (kafka.securityProtocol, or from kafka.sasl.enabled and kafka.tls.enabled; librdkafka's default PLAINTEXT without them): librdkafka connects to no broker from that entry on, so the bridge refuses it at start-up and the pod would crash-loop; drop the scheme or make them agree" $place $scheme (upper $chartProtocol)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
config.cloudeventsSource as the bridge checks it with --cloudevents (src/config/bounds.rs): an
RFC 3986 URI reference (the schema's pattern checks its characters only, not where they stand:
`a_b:c`, `//host:prod/` or `/a[b]` passed it) without user information. Checked whether or not
config.cloudevents is on: the value is in the pod's environment either way, and turning
CloudEvents on later would make the pods crash-loop. IP literals are checked exactly too (160
random ones, 78 of them valid, compared with the binary when this was written).
*/}}
{{- define "qikchat-bridge.validateCloudeventsSource" -}}
{{- $s := toString .Values.config.cloudeventsSource -}}
{{- if regexMatch `^(?:[A-Za-z][A-Za-z0-9+.-]*:)?//[^/?#]*@` $s -}}
{{- fail "config.cloudeventsSource holds user information (user:password@), which would go into every record (and is readable in the pod's environment): the bridge refuses it at start-up with config.cloudevents, so the pod would crash-loop; leave it out (the value is not shown: it may hold a password)" -}}
{{- end -}}
{{- $pct := `%[0-9A-Fa-f]{2}` -}}
{{- $pchar := printf `(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%s)` $pct -}}
{{- $pcharNoColon := printf `(?:[A-Za-z0-9._~!$&'()*+,;=@-]|%s)` $pct -}}
{{- $tail := printf `(?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%s)*` $pct -}}
{{- $regName := printf `(?:[A-Za-z0-9._~!$&'()*+,;=-]|%s)*` $pct -}}
{{- /* RFC 3986's IPv6address, alternative by alternative: eight groups, or fewer around one
     "::", the last two of which may be an IPv4 address. */ -}}
{{- $h16 := `[0-9A-Fa-f]{1,4}` -}}
{{- $octet := `(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])` -}}
{{- $ls32 := printf `(?:%s:%s|%s\.%s\.%s\.%s)` $h16 $h16 $octet $octet $octet $octet -}}
{{- $ipv6 := list (printf `(?:%s:){6}%s` $h16 $ls32) (printf `::(?:%s:){5}%s` $h16 $ls32) (printf `(?:%s)?::(?:%s:){4}%s` $h16 $h16 $ls32) -}}
{{- range $n, $after := list (printf `(?:%s:){3}%s` $h16 $ls32) (printf `(?:%s:){2}%s` $h16 $ls32) (printf `%s:%s` $h16 $ls32) $ls32 $h16 "" -}}
{{- $ipv6 = append $ipv6 (printf `(?:(?:%s:){0,%d}%s)?::%s` $h16 (add $n 1) $h16 $after) -}}
{{- end -}}
{{- $ipLiteral := printf `\[(?:%s|[vV][0-9A-Fa-f]+\.[A-Za-z0-9._~!$&'()*+,;=:-]+)\]` (join "|" $ipv6) -}}
{{- $authority := printf `(?:%s|%s)(?::[0-9]*)?` $ipLiteral $regName -}}
{{- $abempty := printf `(?:/%s*)*` $pchar -}}
{{- $absolute := printf `/(?:%s+(?:/%s*)*)?` $pchar $pchar -}}
{{- $rootless := printf `%s+(?:/%s*)*` $pchar $pchar -}}
{{- $noscheme := printf `%s+(?:/%s*)*` $pcharNoColon $pchar -}}
{{- $uri := printf `[A-Za-z][A-Za-z0-9+.-]*:(?://%s%s|%s|%s)?` $authority $abempty $absolute $rootless -}}
{{- $relative := printf `(?://%s%s|%s|%s)?` $authority $abempty $absolute $noscheme -}}
{{- $grammar := printf `^(?:%s|%s)(?:\?%s)?(?:#%s)?$` $uri $relative $tail $tail -}}
{{- if or (not $s) (not (regexMatch $grammar $s)) -}}
{{- fail (printf "config.cloudeventsSource %sis no URI reference (RFC 3986: a scheme holds only letters, digits, '+', '-' and '.' and ends at the first ':' before any '/', a port only digits, '[' only opens an IP literal in the authority): the bridge refuses it at start-up with config.cloudevents, so the pod would crash-loop; e.g. /qikchat/prod or https://hooks.example.com/qikchat" (ternary "(not shown: it may hold a password) " (printf "%q " $s) (contains "@" $s))) -}}
{{- end -}}
{{- end -}}

{{/* "true" when the value holds a URL's password (scheme://user:password@...) as
     src/kafka_props/passwords.rs finds them (and hides from the bridge's logs), else "": one
     holding a `/`, `?`, `#` or blank unescaped (https://c:s3cr/et@idp/token) too. The user alone
     (scheme://user@) holds no secret, nor, after a host:port, an `@` in a query's value
     (?login_hint=a@b), which is the URL's own. */}}
{{- define "qikchat-bridge.hasUrlPassword" -}}
{{- $found := "" -}}
{{- range regexFindAll `[A-Za-z][A-Za-z0-9+.-]*://[^/?#@[:space:]]*:[^@]*@` (toString .) -1 -}}
{{- $after := regexReplaceAll `^[A-Za-z][A-Za-z0-9+.-]*://[^/?#@[:space:]]*:` . "" -}}
{{- $ownAt := regexMatch `^[0-9]*(?:/[^?#@]*)?\?(?:[^#@]*&)?[^&#@]*=[^&#@]*@$` $after -}}
{{- $nextUrl := regexMatch `,[[:space:]]*[A-Za-z][A-Za-z0-9+.-]*://` $after -}}
{{- if not (or $ownAt $nextUrl) -}}
{{- $found = "true" -}}
{{- end -}}
{{- end -}}
{{- $found -}}
{{- end -}}
