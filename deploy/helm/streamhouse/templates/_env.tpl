{{/*
The agent's identity: NODE_ID is the pod name (stable across restarts and
reschedules; stored in the Raft configuration), ADVERTISE_ADDR the pod's
DNS name under the headless Service, which peers dial for Raft and gossip.
*/}}
{{- define "streamhouse.identityEnv" -}}
- name: NODE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: ADVERTISE_ADDR
  value: "$(NODE_ID).{{ include "streamhouse.podDomain" . }}"
{{- end -}}

{{/* Object store and PostgreSQL. */}}
{{- define "streamhouse.storageEnv" -}}
{{- with .Values.s3.bucket }}
- name: S3_BUCKET
  value: {{ . | quote }}
{{- end }}
{{- with .Values.s3.endpoint }}
- name: S3_ENDPOINT
  value: {{ . | quote }}
{{- end }}
- name: S3_REGION
  value: {{ .Values.s3.region | quote }}
- name: S3_PATH_STYLE
  value: {{ .Values.s3.pathStyle | toString | quote }}
{{- if include "streamhouse.s3Credentials" . }}
{{- $secret := include "streamhouse.secretFor" (dict "root" . "part" "s3") }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.s3.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.s3.secretAccessKeyKey }}
{{- end }}
{{- if include "streamhouse.postgres" . }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "streamhouse.secretFor" (dict "root" . "part" "postgres") }}
      key: {{ .Values.postgres.databaseUrlKey }}
{{- end }}
{{- end -}}

{{/* TLS, API keys and the secrets between agents: files in the secrets volume. */}}
{{- define "streamhouse.securityEnv" -}}
{{- $dir := include "streamhouse.secretsDir" . -}}
{{- if .Values.tls.enabled }}
- name: TLS_CERT_PATH
  value: {{ printf "%s/tls/tls.crt" $dir }}
- name: TLS_KEY_PATH
  value: {{ printf "%s/tls/tls.key" $dir }}
{{- if .Values.tls.peerCA }}
- name: TLS_CA_PATH
  value: {{ printf "%s/tls/ca.crt" $dir }}
{{- end }}
{{- end }}
{{- if .Values.apiKeys.enabled }}
- name: API_KEYS_FILE
  value: {{ printf "%s/api-keys" $dir }}
{{- if .Values.apiKeys.metricsAuth }}
- name: METRICS_AUTH
  value: "true"
{{- end }}
{{- end }}
{{- if include "streamhouse.clusterSecret" . }}
- name: CLUSTER_SECRET_FILE
  value: {{ printf "%s/cluster-secret" $dir }}
{{- end }}
{{- if include "streamhouse.gossipKey" . }}
- name: GOSSIP_KEY_FILE
  value: {{ printf "%s/gossip-key" $dir }}
{{- end }}
{{- end -}}

{{/* The secrets volume's sources, at the paths securityEnv names. */}}
{{- define "streamhouse.secretSources" -}}
{{- if .Values.tls.enabled }}
- secret:
    name: {{ .Values.tls.secretName }}
    items:
      - key: {{ .Values.tls.certKey }}
        path: tls/tls.crt
      - key: {{ .Values.tls.keyKey }}
        path: tls/tls.key
      {{- if .Values.tls.peerCA }}
      - key: {{ .Values.tls.caKey }}
        path: tls/ca.crt
      {{- end }}
{{- end }}
{{- if .Values.apiKeys.enabled }}
- secret:
    name: {{ include "streamhouse.secretFor" (dict "root" . "part" "apiKeys") }}
    items:
      - key: {{ .Values.apiKeys.key }}
        path: api-keys
{{- end }}
{{- if include "streamhouse.clusterSecret" . }}
- secret:
    name: {{ include "streamhouse.secretFor" (dict "root" . "part" "clusterSecret") }}
    items:
      - key: {{ .Values.clusterSecret.key }}
        path: cluster-secret
{{- end }}
{{- if include "streamhouse.gossipKey" . }}
- secret:
    name: {{ include "streamhouse.secretFor" (dict "root" . "part" "gossipKey") }}
    items:
      - key: {{ .Values.gossipKey.key }}
        path: gossip-key
{{- end }}
{{- end -}}
