{{/*
Refuses values that would give a broken cluster, with a message naming the
value. Included once, by the StatefulSet.
*/}}
{{- define "streamhouse.validate" -}}
{{- $v := .Values -}}
{{- $replicas := int $v.replicas -}}
{{- $expect := int $v.cluster.bootstrapExpect -}}
{{- if lt $replicas 1 -}}
{{- fail (printf "replicas=%d: run at least one agent" $replicas) -}}
{{- end -}}
{{- if or (lt $expect 1) (gt $expect $replicas) -}}
{{- fail (printf "cluster.bootstrapExpect=%d: must be between 1 and replicas (%d); the founders must all run to bootstrap" $expect $replicas) -}}
{{- end -}}
{{- if and (gt $replicas 1) (not $v.s3.bucket) -}}
{{- fail (printf "s3.bucket is empty with replicas=%d: agents of one cluster must share a bucket (the local-directory store is for a single agent)" $replicas) -}}
{{- end -}}
{{- if and $v.s3.endpoint (not (regexMatch "^https?://[^/]+" $v.s3.endpoint)) -}}
{{- fail (printf "s3.endpoint=%q: must be an http:// or https:// URL" $v.s3.endpoint) -}}
{{- end -}}
{{- if and $v.s3.existingSecret (or $v.s3.accessKeyId $v.s3.secretAccessKey) -}}
{{- fail "s3: set existingSecret or accessKeyId/secretAccessKey, not both" -}}
{{- end -}}
{{- if ne (empty $v.s3.accessKeyId) (empty $v.s3.secretAccessKey) -}}
{{- fail "s3.accessKeyId and s3.secretAccessKey must be set together (or both left empty for the AWS SDK's default credential chain)" -}}
{{- end -}}
{{- if and $v.postgres.existingSecret $v.postgres.databaseUrl -}}
{{- fail "postgres: set existingSecret or databaseUrl, not both" -}}
{{- end -}}
{{- if and $v.tls.enabled (not $v.tls.secretName) -}}
{{- fail "tls.enabled needs tls.secretName (a kubernetes.io/tls Secret, e.g. written by cert-manager)" -}}
{{- end -}}
{{- if and $v.tls.peerCA (not $v.tls.enabled) -}}
{{- fail "tls.peerCA (mutual TLS between agents) needs tls.enabled and tls.secretName: the agents present that certificate to each other" -}}
{{- end -}}
{{- if $v.apiKeys.enabled -}}
{{- if and $v.apiKeys.existingSecret $v.apiKeys.lines -}}
{{- fail "apiKeys: set existingSecret or lines, not both" -}}
{{- end -}}
{{- if not (or $v.apiKeys.existingSecret $v.apiKeys.lines) -}}
{{- fail "apiKeys.enabled needs apiKeys.existingSecret or apiKeys.lines (from `streamhouse apikey create`)" -}}
{{- end -}}
{{- else if or $v.apiKeys.lines $v.apiKeys.existingSecret $v.apiKeys.metricsAuth -}}
{{- fail "apiKeys.lines, existingSecret and metricsAuth take effect only with apiKeys.enabled=true" -}}
{{- end -}}
{{- range $name := list "clusterSecret" "gossipKey" -}}
{{- $s := index $v $name -}}
{{- if and $s.existingSecret $s.value -}}
{{- fail (printf "%s: set existingSecret or value, not both" $name) -}}
{{- end -}}
{{- end -}}
{{- if and $v.clusterSecret.value (lt (len $v.clusterSecret.value) 16) -}}
{{- fail (printf "clusterSecret.value is %d bytes: use at least 16 (openssl rand -base64 32)" (len $v.clusterSecret.value)) -}}
{{- end -}}
{{- if and $v.serviceMonitor.enabled $v.tls.enabled (not $v.serviceMonitor.tlsConfig) -}}
{{- fail "serviceMonitor.tlsConfig is needed with tls.enabled: how Prometheus verifies the agents (ca and serverName, or insecureSkipVerify: true)" -}}
{{- end -}}
{{- if and $v.serviceMonitor.enabled $v.apiKeys.metricsAuth (not $v.serviceMonitor.bearerTokenSecret) -}}
{{- fail "serviceMonitor.bearerTokenSecret (name, key of a read API key's token) is needed with apiKeys.metricsAuth: /metrics answers 401 without it" -}}
{{- end -}}
{{- include "streamhouse.validateConfig" . -}}
{{- include "streamhouse.validatePDB" . -}}
{{- end -}}

{{/* config: only settings the agent reads, not those the chart sets, never empty. */}}
{{- define "streamhouse.validateConfig" -}}
{{- $known := splitList " " (include "streamhouse.agentSettings" .) -}}
{{- $managed := splitList " " (include "streamhouse.managedSettings" .) -}}
{{- range $name, $value := .Values.config -}}
{{- if not (has $name $known) -}}
{{- fail (printf "config.%s is not a StreamHouse agent setting (see `streamhouse agent --help` or the README's configuration table)" $name) -}}
{{- end -}}
{{- if has $name $managed -}}
{{- fail (printf "config.%s is set by the chart; use its structured values (replicas, cluster, ports, s3, postgres, tls, apiKeys, clusterSecret, gossipKey)" $name) -}}
{{- end -}}
{{- if eq (toString $value) "" -}}
{{- fail (printf "config.%s is empty: leave it out to get the agent's default" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The PodDisruptionBudget must keep a majority of the Raft voters: with n
agents there are 3 voters (5 from five agents on), so at most 1 (2) may
be down. Fewer than 3 agents tolerate no loss; the budget then only orders
drains.
*/}}
{{- define "streamhouse.validatePDB" -}}
{{- $pdb := .Values.podDisruptionBudget -}}
{{- if $pdb.enabled -}}
{{- $max := int $pdb.maxUnavailable -}}
{{- $voters := min (int .Values.replicas) 5 -}}
{{- $safe := div (sub $voters 1) 2 | max 1 -}}
{{- if or (lt $max 1) (gt $max $safe) -}}
{{- fail (printf "podDisruptionBudget.maxUnavailable=%d: must be between 1 and %d so that %d Raft voters keep their majority" $max $safe $voters) -}}
{{- end -}}
{{- end -}}
{{- end -}}
