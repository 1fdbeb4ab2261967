{{/*
Names and labels. Every object is <release>-cityhub-<component> unless the release is called
cityhub already; components are bridge, worker, worker-side, api, delivery, history.
*/}}
{{- define "cityhub.fullname" -}}
{{- if contains "cityhub" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-cityhub" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cityhub.componentName" -}}
{{- printf "%s-%s" (include "cityhub.fullname" .root) .component -}}
{{- end -}}

{{- define "cityhub.selectorLabels" -}}
app.kubernetes.io/name: cityhub
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "cityhub.labels" -}}
{{ include "cityhub.selectorLabels" . }}
app.kubernetes.io/part-of: cityhub
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of objects that belong to the whole release rather than one component. */}}
{{- define "cityhub.releaseLabels" -}}
app.kubernetes.io/name: cityhub
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: cityhub
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "cityhub.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cityhub.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "cityhub.image" -}}
{{- $image := .Values.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The Kafka login of a component: its own credentials entry when it names a user, else default's.
worker-side logs in as the worker (cityhub.loginComponent). Call with
(dict "root" $ "component" "bridge"); yields YAML of {username, passwordSecret}.
*/}}
{{- define "cityhub.kafkaCredentials" -}}
{{- $all := .root.Values.kafka.credentials -}}
{{- $own := index $all (include "cityhub.loginComponent" .component) | default dict -}}
{{- if $own.username -}}
{{- toYaml $own -}}
{{- else -}}
{{- toYaml $all.default -}}
{{- end -}}
{{- end -}}

{{- define "cityhub.kafkaUsesSasl" -}}
{{- if has .Values.kafka.securityProtocol (list "SASL_SSL" "SASL_PLAINTEXT") -}}true{{- end -}}
{{- end -}}

{{- define "cityhub.kafkaUsesTls" -}}
{{- if has .Values.kafka.securityProtocol (list "SASL_SSL" "SSL") -}}true{{- end -}}
{{- end -}}

{{/*
What a component needs, so that each gets only its own secrets:
  mqtt: the bridge (ingest) and the delivery (MQTT subscriptions publish to the broker)
  kek: the processes that seal or open personal values (worker, API, delivery), and worker-side:
       it keeps the privacy views (the open-data publisher reads the register), and the
       subjects' keys among them are read only with the KEK
  history: the history writer, and the API (reads and erasure)
*/}}
{{- define "cityhub.needs" -}}
{{- $needs := dict
  "bridge" (dict "mqtt" true "kek" false "history" false)
  "worker" (dict "mqtt" false "kek" true "history" false)
  "worker-side" (dict "mqtt" false "kek" true "history" false)
  "api" (dict "mqtt" false "kek" true "history" true)
  "delivery" (dict "mqtt" true "kek" true "history" false)
  "history" (dict "mqtt" false "kek" false "history" true) -}}
{{- toYaml (index $needs .component) -}}
{{- end -}}

{{/*
One egress rule to a service of networkPolicy (kafka, mqtt, postgres): its CIDR when ipBlock is
set (a managed service outside the cluster), else its namespace and pod selectors; its ports.
*/}}
{{- define "cityhub.egressTo" -}}
- to:
    {{- if .ipBlock }}
    - ipBlock:
        cidr: {{ .ipBlock }}
    {{- else }}
    - namespaceSelector:
        {{- toYaml .namespaceSelector | nindent 8 }}
      podSelector:
        {{- toYaml .podSelector | nindent 8 }}
    {{- end }}
  ports:
    {{- range .ports }}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
{{- end -}}
