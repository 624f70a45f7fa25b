{{/* Names and labels. */}}
{{- define "streamhouse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "streamhouse.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "streamhouse.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "streamhouse.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The headless Service: pods' stable DNS names for gossip and Raft. */}}
{{- define "streamhouse.headless" -}}
{{- printf "%s-headless" (include "streamhouse.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The DNS domain of every pod: <pod>.<this>. */}}
{{- define "streamhouse.podDomain" -}}
{{- printf "%s.%s.svc.%s" (include "streamhouse.headless" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{- define "streamhouse.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "streamhouse.selectorLabels" . }}
app.kubernetes.io/version: {{ include "streamhouse.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "streamhouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "streamhouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "streamhouse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "streamhouse.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "streamhouse.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion | toString | trunc 63 -}}
{{- end -}}

{{- define "streamhouse.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "streamhouse.imageTag" .) -}}
{{- end -}}

{{/* REST scheme of the probes and the ServiceMonitor. */}}
{{- define "streamhouse.scheme" -}}
{{- if .Values.tls.enabled }}HTTPS{{ else }}HTTP{{ end -}}
{{- end -}}

{{/* JOIN: the founders' gossip addresses through the headless Service. */}}
{{- define "streamhouse.join" -}}
{{- $seeds := list -}}
{{- range $i := until (int .Values.cluster.bootstrapExpect | max 1 | int) -}}
{{- $seeds = append $seeds (printf "%s-%d.%s:%d" (include "streamhouse.fullname" $) $i (include "streamhouse.podDomain" $) (int $.Values.ports.gossip)) -}}
{{- end -}}
{{- join "," $seeds -}}
{{- end -}}

{{/*
Every environment variable the agent reads (the env tags of agentCmd in
cmd/streamhouse/config.go). deploy/deploy_test.go fails when this list and
config.go differ.
*/}}
{{- define "streamhouse.agentSettings" -}}
ADVERTISE_ADDR API_KEYS_FILE AWS_ACCESS_KEY_ID AWS_REGION AWS_SECRET_ACCESS_KEY BATCH_SIZE BATCH_TIMEOUT_MS BIND_ADDR BOOTSTRAP_EXPECT CHECKPOINT_INTERVAL_MS CLUSTER_SECRET CLUSTER_SECRET_FILE CONSOLE_ENABLED DATABASE_URL DATA_DIR DEAD_AGENT_TIMEOUT GOSSIP_KEY GOSSIP_KEY_FILE GOSSIP_PORT GROUP_INITIAL_REBALANCE_DELAY_MS GRPC_MAX_CONCURRENT_STREAMS GRPC_PORT HTTP_PORT JOIN KAFKA_ADVERTISED_ADDR KAFKA_AUTO_CREATE_TOPICS KAFKA_DEFAULT_PARTITIONS KAFKA_PORT KEY_FETCH_BYTES_PER_SEC KEY_MUTATIONS_PER_SEC KEY_PRODUCE_BYTES_PER_SEC LOG_FORMAT LOG_LEVEL MAX_GROUPS MAX_PARTITIONS MAX_RECORD_BYTES MAX_TOPICS MAX_UNFLUSHED_BYTES MAX_UNFLUSHED_RECORDS METRICS_AUTH METRICS_PARTITION_SERIES MIN_FREE_DISK_BYTES NODE_ID OBJECT_STORE_DIR ORPHAN_GRACE_MS PARTITION_FAILOVER_TIMEOUT PEER_PORT PEER_TLS_CERT_PATH PEER_TLS_KEY_PATH PPROF_ADDR PPROF_ALLOW_REMOTE PPROF_BLOCK_RATE PPROF_MUTEX_FRACTION PROPOSE_IN_FLIGHT RAFT_PARALLEL_LEADER_WRITE RESTORE_ALLOW_UNREADABLE RESTORE_FROM_POSTGRES RESTORE_OFFSET_GAP RESTORE_READ_RETRY_MS RETENTION_CHECK_MS RUST_LOG S3_BUCKET S3_ENDPOINT S3_PATH_STYLE S3_REGION S3_TIMEOUT_MS SEGMENT_CACHE_SIZE SEGMENT_MAX_AGE_MS SEGMENT_MAX_BYTES TLS_CA_PATH TLS_CERT_PATH TLS_KEY_PATH WAL_DIR WAL_ENABLED WAL_SEGMENT_BYTES WAL_SYNC_MS
{{- end -}}

{{/* The settings the chart sets itself from structured values. */}}
{{- define "streamhouse.managedSettings" -}}
NODE_ID ADVERTISE_ADDR BIND_ADDR JOIN BOOTSTRAP_EXPECT DATA_DIR HTTP_PORT GRPC_PORT KAFKA_PORT PEER_PORT GOSSIP_PORT S3_BUCKET S3_ENDPOINT S3_REGION AWS_REGION S3_PATH_STYLE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY DATABASE_URL TLS_CERT_PATH TLS_KEY_PATH TLS_CA_PATH CLUSTER_SECRET CLUSTER_SECRET_FILE GOSSIP_KEY GOSSIP_KEY_FILE API_KEYS_FILE METRICS_AUTH
{{- end -}}

{{/*
A config value as the agent expects it. Helm reads every number in the
values as a float64; whole numbers are written without an exponent
(1073741824, not 1.073741824e+09).
*/}}
{{- define "streamhouse.settingValue" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) -}}
{{- int64 . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{/* Where the Secrets are mounted. */}}
{{- define "streamhouse.secretsDir" -}}/etc/streamhouse{{- end -}}

{{/* The Secret each credential comes from: its existing Secret or the chart's. */}}
{{- define "streamhouse.secretFor" -}}
{{- $v := index .root.Values .part -}}
{{- default (include "streamhouse.fullname" .root) $v.existingSecret -}}
{{- end -}}

{{- define "streamhouse.s3Credentials" -}}
{{- if or .Values.s3.existingSecret (and .Values.s3.accessKeyId .Values.s3.secretAccessKey) }}true{{ end -}}
{{- end -}}

{{- define "streamhouse.postgres" -}}
{{- if or .Values.postgres.existingSecret .Values.postgres.databaseUrl }}true{{ end -}}
{{- end -}}

{{- define "streamhouse.clusterSecret" -}}
{{- if or .Values.clusterSecret.existingSecret .Values.clusterSecret.value }}true{{ end -}}
{{- end -}}

{{- define "streamhouse.gossipKey" -}}
{{- if or .Values.gossipKey.existingSecret .Values.gossipKey.value }}true{{ end -}}
{{- end -}}

{{/* Whether the chart creates its own Secret (values given inline). */}}
{{- define "streamhouse.ownSecret" -}}
{{- $v := .Values -}}
{{- if or (and $v.s3.accessKeyId (not $v.s3.existingSecret)) (and $v.postgres.databaseUrl (not $v.postgres.existingSecret)) (and $v.apiKeys.enabled $v.apiKeys.lines (not $v.apiKeys.existingSecret)) (and $v.clusterSecret.value (not $v.clusterSecret.existingSecret)) (and $v.gossipKey.value (not $v.gossipKey.existingSecret)) }}true{{ end -}}
{{- end -}}

{{/* Whether the secrets volume is mounted. */}}
{{- define "streamhouse.secretsVolume" -}}
{{- if or .Values.tls.enabled .Values.apiKeys.enabled (include "streamhouse.clusterSecret" .) (include "streamhouse.gossipKey" .) }}true{{ end -}}
{{- end -}}

{{/*
GOMEMLIMIT: "auto" = 90% of resources.limits.memory in bytes (plain
numbers or the binary/decimal suffixes Ki Mi Gi Ti k M G T), an explicit
Go value (bytes with an optional B KiB MiB GiB TiB suffix), or nothing.
*/}}
{{- define "streamhouse.goMemLimit" -}}
{{- $v := toString .Values.goMemLimit -}}
{{- if eq $v "auto" -}}
{{- $mem := dig "limits" "memory" "" (.Values.resources | default dict) -}}
{{- if kindIs "float64" $mem -}}
{{- $mem = int64 $mem | toString -}}
{{- end -}}
{{- $mem = toString $mem -}}
{{- if $mem -}}
{{- $num := regexFind "^[0-9]+" $mem -}}
{{- $suffix := trimPrefix $num $mem -}}
{{- $mult := dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 -}}
{{- if or (not $num) (not (hasKey $mult $suffix)) -}}
{{- fail (printf "goMemLimit: auto cannot read resources.limits.memory=%q (use a whole number with Ki, Mi, Gi, Ti, k, M, G or T); set goMemLimit explicitly, e.g. 7GiB" $mem) -}}
{{- end -}}
{{- div (mul (atoi $num) (index $mult $suffix)) 10 | mul 9 -}}
{{- end -}}
{{- else if $v -}}
{{- if not (regexMatch "^[0-9]+(B|KiB|MiB|GiB|TiB)?$" $v) -}}
{{- fail (printf "goMemLimit=%q: use auto, \"\" or a Go memory limit such as 7GiB or 7516192768" $v) -}}
{{- end -}}
{{- $v -}}
{{- end -}}
{{- end -}}
