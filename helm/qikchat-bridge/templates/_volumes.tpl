{{/*
The pod's volumes and mounts checked as one: the chart's own and extraVolumes/extraVolumeMounts.
The API server refuses a pod with two volumes of one name or two mounts at one path, but only at
install, and a StatefulSet silently puts the spool's claim in place of a volume named "spool":
each of those is refused here, naming the value to change.
*/}}
{{- define "qikchat-bridge.validateVolumes" -}}
{{- $k := .Values.kafka -}}
{{- $p := .Values.persistence -}}
{{- $tlsMount := and $k.tls.enabled $k.tls.existingSecret -}}
{{- /* name -> what owns it, and the mount paths the chart takes */ -}}
{{- $volumes := dict -}}
{{- $paths := dict -}}
{{- if not .Values.auth.insecureDisableAuth -}}
{{- $_ := set $volumes "auth" "the chart (the webhook credentials)" -}}
{{- $_ := set $paths (include "qikchat-bridge.authDir" .) "the chart (the webhook credentials)" -}}
{{- end -}}
{{- if $k.sasl.enabled -}}
{{- $_ := set $volumes "kafka-sasl" "the chart (kafka.sasl)" -}}
{{- $_ := set $paths (include "qikchat-bridge.saslDir" .) "the chart (kafka.sasl)" -}}
{{- end -}}
{{- if $tlsMount -}}
{{- $_ := set $volumes "kafka-tls" "the chart (kafka.tls)" -}}
{{- $_ := set $paths (include "qikchat-bridge.tlsDir" .) "the chart (kafka.tls)" -}}
{{- end -}}
{{- if $p.enabled -}}
{{- $_ := set $volumes "spool" "the chart (persistence: the spool's claim)" -}}
{{- $spoolPath := clean (toString $p.mountPath) -}}
{{- with get $paths $spoolPath -}}
{{- fail (printf "persistence.mountPath %q is already taken by %s; a container cannot have two mounts at one path (the API server refuses it): choose another path" (toString $p.mountPath) .) -}}
{{- end -}}
{{- $_ := set $paths $spoolPath "the chart (persistence.mountPath)" -}}
{{- end -}}
{{- range $i, $v := .Values.extraVolumes | default list -}}
{{- $name := toString (default "" $v.name) -}}
{{- if not $name -}}
{{- fail (printf "extraVolumes[%d] has no name: the API server refuses a volume without one" $i) -}}
{{- end -}}
{{- with get $volumes $name -}}
{{- fail (printf "extraVolumes[%d]: the name %q is already taken by %s; %s: give it another name" $i $name . (ternary "a StatefulSet silently mounts the spool's claim in its place" "the API server refuses two volumes of one name" (eq $name "spool"))) -}}
{{- end -}}
{{- $_ := set $volumes $name (printf "extraVolumes[%d]" $i) -}}
{{- end -}}
{{- range $i, $m := .Values.extraVolumeMounts | default list -}}
{{- $name := toString (default "" $m.name) -}}
{{- if not (hasKey $volumes $name) -}}
{{- fail (printf "extraVolumeMounts[%d] mounts the volume %q, which the pod does not have (its volumes: %s): the API server would refuse the pod; add it to extraVolumes or correct the name" $i $name (keys $volumes | sortAlpha | join ", " | default "none")) -}}
{{- end -}}
{{- $path := toString (default "" $m.mountPath) -}}
{{- if not $path -}}
{{- fail (printf "extraVolumeMounts[%d] (volume %q) has no mountPath: the API server refuses a mount without one" $i $name) -}}
{{- end -}}
{{- with get $paths (clean $path) -}}
{{- fail (printf "extraVolumeMounts[%d]: the mountPath %q is already taken by %s; a container cannot have two mounts at one path (the API server refuses it, or one hides the other): choose another path" $i $path .) -}}
{{- end -}}
{{- $_ := set $paths (clean $path) (printf "extraVolumeMounts[%d]" $i) -}}
{{- end -}}
{{- end -}}
