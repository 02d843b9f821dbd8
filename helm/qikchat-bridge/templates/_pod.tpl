{{/*
The pod template shared by the Deployment and, with persistence.enabled, the StatefulSet.
*/}}
{{- define "qikchat-bridge.podTemplate" -}}
{{- $k := .Values.kafka -}}
{{- $c := .Values.config -}}
{{- $p := .Values.persistence -}}
{{- $proto := include "qikchat-bridge.securityProtocol" . -}}
{{- $tlsMount := and $k.tls.enabled $k.tls.existingSecret -}}
{{- $hasVolumes := or (not .Values.auth.insecureDisableAuth) $k.sasl.enabled $tlsMount .Values.extraVolumes -}}
{{- $hasMounts := or (not .Values.auth.insecureDisableAuth) $k.sasl.enabled $tlsMount $p.enabled .Values.extraVolumeMounts -}}
{{- $probes := .Values.probes | default dict -}}
metadata:
  labels:
    {{- include "qikchat-bridge.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- /* No checksum/<secret> annotation: a hash of a Secret's manifest, whose every other byte is
         known, lets anyone who can read pods guess the password offline. The bridge reads its
         mounted credential files again every second, so a changed Secret needs no rollout. */}}
  {{- with .Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "qikchat-bridge.serviceAccountName" . }}
  automountServiceAccountToken: false
  # The bridge maps KAFKA_* variables to librdkafka properties; service links would add
  # KAFKA_PORT & co. for a Service named "kafka". The bridge ignores those, but keep the
  # environment exactly what this chart sets.
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ include "qikchat-bridge.terminationGracePeriodSeconds" . }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    {{- with .Values.podSecurityContext.runAsUser }}
    runAsUser: {{ . }}
    {{- end }}
    {{- with .Values.podSecurityContext.runAsGroup }}
    runAsGroup: {{ . }}
    {{- end }}
    {{- with .Values.podSecurityContext.fsGroup }}
    fsGroup: {{ . }}
    {{- /* fsGroupChangePolicy stays Kubernetes' default, Always: the bridge makes its spool files
           private to its user (0600), so OnRootMismatch, which skips a volume whose root already
           belongs to the fsGroup, left them unreadable to any other user (runAsUser changed, a
           claim restored under OpenShift's UID of another namespace): the pod crash-looped with
           the records answered 200 in them. The spool volume holds a handful of files, so the
           kubelet's walk at each mount costs nothing. */}}
    {{- end }}
    seccompProfile:
      type: RuntimeDefault
  containers:
    - name: qikchat-bridge
      image: {{ include "qikchat-bridge.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      {{- $args := list -}}
      {{- range $key, $value := $k.properties }}
      {{- if not (kindIs "invalid" $value) }}
      {{- /* Helm reads unquoted numbers of values files as float64, which toString renders
           in exponent form (1000000 -> "1e+06", read by librdkafka as 1): integral floats
           are rendered as integers, other floats (linger.ms: 0.5) and strings as they are. */}}
      {{- $text := toString $value -}}
      {{- if and (kindIs "float64" $value) (eq $value (float64 (int64 $value))) -}}
      {{- $text = int64 $value | toString -}}
      {{- end -}}
      {{- $args = append $args "-X" -}}
      {{- $args = append $args (printf "%s=%s" $key $text) -}}
      {{- end }}
      {{- end }}
      {{- $args = concat $args .Values.extraArgs }}
      {{- with $args }}
      args:
        {{- range . }}
        - {{ . | quote }}
        {{- end }}
      {{- end }}
      ports:
        - name: http
          containerPort: {{ .Values.containerPorts.http }}
          protocol: TCP
        - name: admin
          containerPort: {{ .Values.containerPorts.admin }}
          protocol: TCP
      env:
        - name: BRIDGE_LISTEN
          value: {{ printf "%s:%d" $c.listenHost (int .Values.containerPorts.http) | quote }}
        - name: BRIDGE_ADMIN_LISTEN
          value: {{ printf "%s:%d" $c.listenHost (int .Values.containerPorts.admin) | quote }}
        - name: BRIDGE_WEBHOOK_PATH
          value: {{ $c.webhookPath | quote }}
        {{- if .Values.auth.insecureDisableAuth }}
        - name: BRIDGE_INSECURE_DISABLE_AUTH
          value: "true"
        {{- else }}
        - name: BRIDGE_AUTH_FILE
          value: {{ printf "%s/%s" (include "qikchat-bridge.authDir" .) (include "qikchat-bridge.authSecretKey" .) | quote }}
        {{- end }}
        - name: BRIDGE_ACK_TIMEOUT
          value: {{ $c.ackTimeout | quote }}
        - name: BRIDGE_MAX_BODY_BYTES
          value: {{ int64 $c.maxBodyBytes | toString | quote }}
        - name: BRIDGE_MAX_IN_FLIGHT
          value: {{ int64 $c.maxInFlight | toString | quote }}
        - name: BRIDGE_MAX_IN_FLIGHT_BYTES
          value: {{ int64 $c.maxInFlightBytes | toString | quote }}
        - name: BRIDGE_MAX_CONNECTIONS
          value: {{ int64 $c.maxConnections | toString | quote }}
        {{- if $p.enabled }}
        - name: BRIDGE_SPOOL_DIR
          value: {{ $p.mountPath | quote }}
        - name: BRIDGE_SPOOL_MAX_BYTES
          value: {{ include "qikchat-bridge.spoolMaxBytes" . | quote }}
        - name: BRIDGE_REPLAY_MAX_RATE
          value: {{ int64 $p.replayMaxRate | toString | quote }}
        {{- /* null: unset, so the bridge's own default applies (250 ms, or a quarter of the time
               left when that is less). */}}
        {{- if not (kindIs "invalid" $p.writeBudget) }}
        - name: BRIDGE_SPOOL_WRITE_BUDGET
          value: {{ $p.writeBudget | quote }}
        {{- end }}
        {{- end }}
        - name: BRIDGE_TOPIC_PREFIX
          value: {{ $c.topicPrefix | quote }}
        {{- $routes := list }}
        {{- range $event, $topic := $c.topics }}
        {{- if $topic }}
        {{- $routes = append $routes (printf "%s=%s" $event $topic) }}
        {{- end }}
        {{- end }}
        {{- if $routes }}
        - name: BRIDGE_TOPICS
          value: {{ join "," $routes | quote }}
        {{- end }}
        - name: BRIDGE_FALLBACK_TOPIC
          value: {{ $c.fallbackTopic | quote }}
        - name: BRIDGE_DEADLETTER_TOPIC
          value: {{ $c.deadletterTopic | quote }}
        - name: BRIDGE_KEY_STRATEGY
          value: {{ $c.keyStrategy | quote }}
        - name: BRIDGE_HEADER_READ_TIMEOUT
          value: {{ $c.headerReadTimeout | quote }}
        - name: BRIDGE_IDLE_TIMEOUT
          value: {{ $c.idleTimeout | quote }}
        - name: BRIDGE_BODY_READ_TIMEOUT
          value: {{ $c.bodyReadTimeout | quote }}
        - name: BRIDGE_SHUTDOWN_DELAY
          value: {{ $c.shutdownDelay | quote }}
        - name: BRIDGE_SHUTDOWN_GRACE
          value: {{ $c.shutdownGrace | quote }}
        - name: BRIDGE_FLUSH_TIMEOUT
          value: {{ $c.flushTimeout | quote }}
        - name: BRIDGE_LOG_FORMAT
          value: {{ $c.logFormat | quote }}
        - name: BRIDGE_LOG_PHONE_NUMBERS
          value: {{ $c.logPhoneNumbers | toString | quote }}
        - name: BRIDGE_CLOUDEVENTS
          value: {{ $c.cloudevents | toString | quote }}
        - name: BRIDGE_HTTP1_ONLY
          value: {{ $c.http1Only | toString | quote }}
        - name: BRIDGE_CLOUDEVENTS_SOURCE
          value: {{ $c.cloudeventsSource | quote }}
        - name: RUST_LOG
          value: {{ $c.logLevel | quote }}
        - name: KAFKA_BOOTSTRAP_SERVERS
          value: {{ include "qikchat-bridge.bootstrapServers" . | quote }}
        - name: KAFKA_ACKS
          value: {{ $k.acks | toString | quote }}
        - name: KAFKA_ENABLE_IDEMPOTENCE
          value: {{ $k.idempotence | toString | quote }}
        {{- with $proto }}
        - name: KAFKA_SECURITY_PROTOCOL
          value: {{ . | quote }}
        {{- end }}
        {{- if $k.sasl.enabled }}
        - name: KAFKA_SASL_MECHANISM
          value: {{ $k.sasl.mechanism | quote }}
        {{- if $k.sasl.usernameKey }}
        {{- /* A file, not a secretKeyRef: the bridge reads it again when the Secret rotates. */}}
        - name: KAFKA_SASL_USERNAME_FILE
          value: {{ printf "%s/%s" (include "qikchat-bridge.saslDir" .) $k.sasl.usernameKey | quote }}
        {{- else }}
        - name: KAFKA_SASL_USERNAME
          value: {{ $k.sasl.username | quote }}
        {{- end }}
        - name: KAFKA_SASL_PASSWORD_FILE
          value: {{ printf "%s/%s" (include "qikchat-bridge.saslDir" .) (include "qikchat-bridge.saslPasswordKey" .) | quote }}
        {{- end }}
        {{- if $k.tls.enabled }}
        {{- if and $k.tls.existingSecret $k.tls.caKey }}
        - name: KAFKA_SSL_CA_LOCATION
          value: {{ printf "%s/%s" (include "qikchat-bridge.tlsDir" .) $k.tls.caKey | quote }}
        {{- end }}
        {{- if $k.tls.certKey }}
        - name: KAFKA_SSL_CERTIFICATE_LOCATION
          value: {{ printf "%s/%s" (include "qikchat-bridge.tlsDir" .) $k.tls.certKey | quote }}
        - name: KAFKA_SSL_KEY_LOCATION
          value: {{ printf "%s/%s" (include "qikchat-bridge.tlsDir" .) $k.tls.keyKey | quote }}
        {{- end }}
        {{- if $k.tls.keyPasswordKey }}
        - name: KAFKA_SSL_KEY_PASSWORD_FILE
          value: {{ printf "%s/%s" (include "qikchat-bridge.tlsDir" .) $k.tls.keyPasswordKey | quote }}
        {{- end }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with .Values.extraEnvFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      startupProbe:
        httpGet:
          path: /livez
          port: admin
        {{- with include "qikchat-bridge.probeTiming" (index $probes "startup") | trim }}
        {{- . | nindent 8 }}
        {{- end }}
      livenessProbe:
        httpGet:
          path: /livez
          port: admin
        {{- with include "qikchat-bridge.probeTiming" (index $probes "liveness") | trim }}
        {{- . | nindent 8 }}
        {{- end }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: admin
        {{- with include "qikchat-bridge.probeTiming" (index $probes "readiness") | trim }}
        {{- . | nindent 8 }}
        {{- end }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        allowPrivilegeEscalation: false
        privileged: false
        readOnlyRootFilesystem: true
        runAsNonRoot: true
        capabilities:
          drop:
            - ALL
        seccompProfile:
          type: RuntimeDefault
      {{- if $hasMounts }}
      volumeMounts:
        {{- if not .Values.auth.insecureDisableAuth }}
        - name: auth
          mountPath: {{ include "qikchat-bridge.authDir" . }}
          readOnly: true
        {{- end }}
        {{- if $k.sasl.enabled }}
        - name: kafka-sasl
          mountPath: {{ include "qikchat-bridge.saslDir" . }}
          readOnly: true
        {{- end }}
        {{- if $tlsMount }}
        - name: kafka-tls
          mountPath: {{ include "qikchat-bridge.tlsDir" . }}
          readOnly: true
        {{- end }}
        {{- if $p.enabled }}
        # The spool: the only writable path (the root filesystem stays read-only).
        - name: spool
          mountPath: {{ $p.mountPath }}
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
  {{- if $hasVolumes }}
  volumes:
    {{- if not .Values.auth.insecureDisableAuth }}
    - name: auth
      secret:
        secretName: {{ include "qikchat-bridge.authSecretName" . }}
        defaultMode: 0440
        items:
          - key: {{ include "qikchat-bridge.authSecretKey" . }}
            path: {{ include "qikchat-bridge.authSecretKey" . }}
    {{- end }}
    {{- if $k.sasl.enabled }}
    - name: kafka-sasl
      secret:
        secretName: {{ include "qikchat-bridge.saslSecretName" . }}
        defaultMode: 0440
        items:
          - key: {{ include "qikchat-bridge.saslPasswordKey" . }}
            path: {{ include "qikchat-bridge.saslPasswordKey" . }}
          {{- with $k.sasl.usernameKey }}
          - key: {{ . }}
            path: {{ . }}
          {{- end }}
    {{- end }}
    {{- if $tlsMount }}
    - name: kafka-tls
      secret:
        secretName: {{ $k.tls.existingSecret }}
        defaultMode: 0440
        items:
          {{- range (compact (list $k.tls.caKey $k.tls.certKey $k.tls.keyKey $k.tls.keyPasswordKey)) }}
          - key: {{ . }}
            path: {{ . }}
          {{- end }}
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  {{- if .Values.topologySpread.enabled }}
  topologySpreadConstraints:
    {{- range .Values.topologySpread.topologyKeys }}
    - topologyKey: {{ . }}
      maxSkew: {{ $.Values.topologySpread.maxSkew }}
      whenUnsatisfiable: {{ $.Values.topologySpread.whenUnsatisfiable }}
      labelSelector:
        matchLabels:
          {{- include "qikchat-bridge.selectorLabels" $ | nindent 10 }}
      {{- /* Spread each Deployment revision on its own. StatefulSet pods have no
      pod-template-hash, and stay in the zones of their volumes anyway. */}}
      {{- if not $p.enabled }}
      matchLabelKeys:
        - pod-template-hash
      {{- end }}
    {{- end }}
  {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/*
A probe's timing fields, each only when set: a null (or missing) one is left out, so Kubernetes
applies its default (initialDelaySeconds 0, periodSeconds 10, timeoutSeconds 1,
failureThreshold 3, successThreshold 1), which the shutdownDelay check counts for readiness.
*/}}
{{- define "qikchat-bridge.probeTiming" -}}
{{- $probe := . | default dict -}}
{{- range $field := list "initialDelaySeconds" "periodSeconds" "timeoutSeconds" "failureThreshold" "successThreshold" }}
{{- $v := index $probe $field }}
{{- if not (kindIs "invalid" $v) }}
{{ $field }}: {{ int64 $v }}
{{- end }}
{{- end }}
{{- end -}}
