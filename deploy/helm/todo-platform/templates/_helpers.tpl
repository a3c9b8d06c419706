{{/*
The five services: values key, Dapr app id (= Service name), port (the
public API: probes, the Service, the ingress), internal port (loopback, what
the sidecar calls: callbacks and service invocation), schema
(= login role and secret `<schema>-db`), the prefix of their own settings,
and whether they host Dapr workflows (and so load the workflow state store).
The same table as local-stack/src/spec.rs; a test compares them.
*/}}
{{- define "todo-platform.services" -}}
- {key: todo, appId: todo-service, port: 8001, internalPort: 8011, schema: todo, prefix: TODO_, workflows: false, public: true}
- {key: audit, appId: audit-service, port: 8002, internalPort: 8012, schema: audit, prefix: AUDIT_, workflows: false, public: false}
- {key: websocket, appId: websocket-service, port: 8003, internalPort: 8013, schema: websocket, prefix: WEBSOCKET_, workflows: false, public: true}
- {key: notification, appId: notification-service, port: 8004, internalPort: 8014, schema: notification, prefix: NOTIFICATION_, workflows: true, public: false}
- {key: recurring, appId: recurring-task-service, port: 8005, internalPort: 8015, schema: recurring, prefix: RECURRING_, workflows: true, public: false}
{{- end -}}

{{/* The schema and role of the workflow state store (secret `dapr-db`). */}}
{{- define "todo-platform.daprSchema" -}}dapr{{- end -}}

{{/* The Kafka topics the platform uses (platform/todo-contract): the three
it exchanges events on and the dead-letter topic of each. */}}
{{- define "todo-platform.topics" -}}
- task-events
- task-updates
- reminders
- task-events-dlq
- task-updates-dlq
- reminders-dlq
{{- end -}}

{{/* Names of the Dapr resources; the first two as in deploy/local. */}}
{{- define "todo-platform.pubsubName" -}}kafka-pubsub{{- end -}}
{{- define "todo-platform.stateStoreName" -}}statestore{{- end -}}
{{- define "todo-platform.secretStoreName" -}}kubernetes-secrets{{- end -}}
{{- define "todo-platform.configName" -}}todo-platform{{- end -}}
{{/* The Secret of an app's own API token (call with its app id). */}}
{{- define "todo-platform.appTokenSecret" -}}{{ printf "%s-app-token" . }}{{- end -}}
{{- define "todo-platform.signingKeySecret" -}}auth-signing-key{{- end -}}

{{- define "todo-platform.labels" -}}
app.kubernetes.io/part-of: todo-platform
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Labels that mark the chart's own test clients (allowed by the NetworkPolicy). */}}
{{- define "todo-platform.clientLabel" -}}
todo-platform.io/client: "true"
{{- end -}}

{{/*
A secret value: the one given in values, else the one already in the
cluster (Secret `name`, key `key`, so an upgrade keeps it), else a new
random one of `length` characters. Call with (list given namespace name key length).
*/}}
{{- define "todo-platform.secretValue" -}}
{{- $given := index . 0 -}}
{{- $namespace := index . 1 -}}
{{- $name := index . 2 -}}
{{- $key := index . 3 -}}
{{- $length := index . 4 -}}
{{- if $given -}}
{{- $given -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" $namespace $name -}}
{{- $data := dict -}}
{{- if $existing -}}{{- $data = $existing.data | default dict -}}{{- end -}}
{{- if hasKey $data $key -}}
{{- index $data $key | b64dec -}}
{{- else -}}
{{- randAlphaNum $length -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* host and port of the services' PostgreSQL. */}}
{{- define "todo-platform.pgHost" -}}
{{- if .Values.postgresql.enabled -}}
{{- printf "%s-postgresql.%s.svc" .Release.Name .Release.Namespace -}}
{{- else -}}
{{- required "postgresql.external.host is required when postgresql.enabled is false" .Values.postgresql.external.host -}}
{{- end -}}
{{- end -}}
{{- define "todo-platform.pgPort" -}}
{{- if .Values.postgresql.enabled -}}5432{{- else -}}{{ .Values.postgresql.external.port }}{{- end -}}
{{- end -}}
{{- define "todo-platform.pgDatabase" -}}
{{- if .Values.postgresql.enabled -}}{{ .Values.postgresql.database }}{{- else -}}{{ .Values.postgresql.external.database }}{{- end -}}
{{- end -}}
{{- define "todo-platform.pgSslmode" -}}
{{- if .Values.postgresql.enabled -}}disable{{- else -}}{{ .Values.postgresql.external.sslmode }}{{- end -}}
{{- end -}}

{{/* The Kafka brokers the pub/sub component and the topics Job use. */}}
{{- define "todo-platform.brokers" -}}
{{- if .Values.kafka.enabled -}}
{{- printf "%s-kafka.%s.svc:9092" .Release.Name .Release.Namespace -}}
{{- else -}}
{{- required "kafka.brokers is required when kafka.enabled is false" .Values.kafka.brokers -}}
{{- end -}}
{{- end -}}

{{/* Partitions per topic: kafka.topics.partitions, or the most replicas asked for. */}}
{{- define "todo-platform.partitions" -}}
{{- $n := int .Values.kafka.topics.partitions -}}
{{- if eq $n 0 -}}
{{- $n = 1 -}}
{{- range $s := include "todo-platform.services" . | fromYamlArray -}}
{{- $r := int (index $.Values.services $s.key).replicas -}}
{{- if gt $r $n -}}{{- $n = $r -}}{{- end -}}
{{- end -}}
{{- if $.Values.autoscaling.enabled -}}{{- $n = max $n (int $.Values.autoscaling.maxReplicas) -}}{{- end -}}
{{- end -}}
{{- $n -}}
{{- end -}}

{{- define "todo-platform.image" -}}
{{- $root := index . 0 -}}
{{- printf "%s/%s:%s" $root.Values.image.repository (index . 1) ($root.Values.image.tag | default $root.Chart.AppVersion) -}}
{{- end -}}

{{/* The restricted container security context every container runs with. */}}
{{- define "todo-platform.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}
{{- define "todo-platform.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}
