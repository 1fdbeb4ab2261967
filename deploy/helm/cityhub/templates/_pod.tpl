{{/*
The pod template of a component: the `cityhub <command>` container with its settings, the
secrets it needs mounted as files (never their values in the manifest), probes, resources and a
read-only root. Call with (dict "root" $ "component" "bridge" "command" "bridge" "values" .Values.bridge),
and "args" (a list) for arguments after the command.
*/}}
{{- define "cityhub.podTemplate" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $needs := include "cityhub.needs" . | fromYaml -}}
{{- $kafkaLogin := include "cityhub.kafkaCredentials" . | fromYaml -}}
{{- $loginOf := include "cityhub.loginComponent" .component -}}
{{- $sasl := include "cityhub.kafkaUsesSasl" $root -}}
{{- $tls := include "cityhub.kafkaUsesTls" $root -}}
{{- $useHistory := and $needs.history $v.history.enabled -}}
{{- /* The MQTT login: the delivery's own user when it has one, else the bridge's. */ -}}
{{- $mqttLogin := dict "username" $v.mqtt.username "passwordSecret" $v.mqtt.passwordSecret "delivery" false -}}
{{- if and (eq .component "delivery") $v.mqtt.delivery.username -}}
{{- $mqttLogin = dict "username" $v.mqtt.delivery.username "passwordSecret" $v.mqtt.delivery.passwordSecret "delivery" true -}}
{{- end -}}
metadata:
  labels:
    {{- include "cityhub.labels" . | nindent 4 }}
  annotations:
    # A changed settings ConfigMap rolls the pods.
    checksum/settings: {{ include (print $root.Template.BasePath "/settings-configmap.yaml") $root | sha256sum }}
spec:
  serviceAccountName: {{ include "cityhub.serviceAccountName" $root }}
  automountServiceAccountToken: false
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  # SIGTERM stops cityhub as Ctrl-C does; `cityhub run` gives its children 30 s for it.
  terminationGracePeriodSeconds: 45
  containers:
    - name: cityhub
      image: {{ include "cityhub.image" $root }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      args: [{{ .command | quote }}{{ range .args }}, {{ . | quote }}{{ end }}]
      ports:
        {{- if eq .component "api" }}
        - name: http
          containerPort: {{ $v.ports.http }}
        {{- end }}
        - name: management
          containerPort: {{ $v.ports.management }}
      envFrom:
        - configMapRef:
            name: {{ include "cityhub.fullname" $root }}-settings
      env:
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- if $sasl }}
        - name: CITYHUB_KAFKA__SASL_USERNAME
          value: {{ required (printf "kafka.credentials.%s.username (or default.username)" $loginOf) $kafkaLogin.username | quote }}
        - name: CITYHUB_KAFKA__SASL_PASSWORD_FILE
          value: /var/run/secrets/cityhub/kafka/password
        {{- end }}
        {{- if $tls }}
        {{- if $v.kafka.tls.caSecret.name }}
        - name: CITYHUB_KAFKA__SSL_CA_FILE
          value: /var/run/secrets/cityhub/kafka-ca/ca.crt
        {{- end }}
        {{- end }}
        {{- if $useHistory }}
        - name: CITYHUB_HISTORY__PASSWORD_FILE
          value: /var/run/secrets/cityhub/postgres/password
        {{- end }}
        {{- if $needs.kek }}
        - name: CITYHUB_PRIVACY__KEY_ENCRYPTION_KEY_FILE
          value: /var/run/secrets/cityhub/kek/key
        {{- end }}
        {{- if $needs.mqtt }}
        # A client id of its own per pod (its name): two clients with one id would take each
        # other's connection over and over.
        - name: CITYHUB_MQTT__CLIENT_ID
          value: $(POD_NAME)
        {{- if and (eq .component "delivery") $mqttLogin.delivery }}
        # MQTT subscriptions publish as a user of their own (write under the delivery root only).
        - name: CITYHUB_MQTT__DELIVERY_USERNAME
          value: {{ $mqttLogin.username | quote }}
        {{- if $mqttLogin.passwordSecret.name }}
        - name: CITYHUB_MQTT__DELIVERY_PASSWORD_FILE
          value: /var/run/secrets/cityhub/mqtt/password
        {{- end }}
        {{- else }}
        {{- with $mqttLogin.username }}
        - name: CITYHUB_MQTT__USERNAME
          value: {{ . | quote }}
        {{- end }}
        {{- if $mqttLogin.passwordSecret.name }}
        - name: CITYHUB_MQTT__PASSWORD_FILE
          value: /var/run/secrets/cityhub/mqtt/password
        {{- end }}
        {{- end }}
        {{- if $v.mqtt.caSecret.name }}
        - name: CITYHUB_MQTT__TLS_CA_FILE
          value: /var/run/secrets/cityhub/mqtt-ca/ca.crt
        {{- end }}
        {{- end }}
        {{- if eq .component "bridge" }}
        - name: CITYHUB_MQTT__SHARE_GROUP
          value: {{ required "mqtt.shareGroup: bridges share one subscription" $v.mqtt.shareGroup | quote }}
        {{- end }}
        {{- if eq .component "api" }}
        # The root is read-only: the daily open-data files go to a volume of their own.
        - name: CITYHUB_OPEN_DATA__FILES_DIR
          value: /var/lib/cityhub/open-data
        {{- end }}
        {{- with .values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      startupProbe:
        httpGet: {path: /metrics, port: management}
        {{- toYaml $v.probes.startup | nindent 8 }}
      livenessProbe:
        httpGet: {path: /metrics, port: management}
        {{- toYaml $v.probes.liveness | nindent 8 }}
      readinessProbe:
        httpGet: {path: /healthz, port: management}
        {{- toYaml $v.probes.readiness | nindent 8 }}
      resources:
        {{- toYaml .values.resources | nindent 8 }}
      securityContext:
        {{- toYaml $v.containerSecurityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- if eq .component "api" }}
        - name: open-data
          mountPath: /var/lib/cityhub/open-data
        {{- end }}
        {{- if $sasl }}
        - name: kafka-password
          mountPath: /var/run/secrets/cityhub/kafka
          readOnly: true
        {{- end }}
        {{- if and $tls $v.kafka.tls.caSecret.name }}
        - name: kafka-ca
          mountPath: /var/run/secrets/cityhub/kafka-ca
          readOnly: true
        {{- end }}
        {{- if $useHistory }}
        - name: postgres-password
          mountPath: /var/run/secrets/cityhub/postgres
          readOnly: true
        {{- end }}
        {{- if $needs.kek }}
        - name: kek
          mountPath: /var/run/secrets/cityhub/kek
          readOnly: true
        {{- end }}
        {{- if and $needs.mqtt $mqttLogin.passwordSecret.name }}
        - name: mqtt-password
          mountPath: /var/run/secrets/cityhub/mqtt
          readOnly: true
        {{- end }}
        {{- if and $needs.mqtt $v.mqtt.caSecret.name }}
        - name: mqtt-ca
          mountPath: /var/run/secrets/cityhub/mqtt-ca
          readOnly: true
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    {{- if eq .component "api" }}
    # Each API replica writes the daily files from the open-data topic it reads whole at start,
    # so a replica that lost its volume writes them again.
    - name: open-data
      emptyDir:
        sizeLimit: {{ .values.openDataFiles.sizeLimit }}
    {{- end }}
    {{- if $sasl }}
    - name: kafka-password
      secret:
        secretName: {{ required (printf "kafka.credentials.%s.passwordSecret.name" $loginOf) $kafkaLogin.passwordSecret.name }}
        defaultMode: 0440
        items:
          - key: {{ $kafkaLogin.passwordSecret.key }}
            path: password
    {{- end }}
    {{- if and $tls $v.kafka.tls.caSecret.name }}
    - name: kafka-ca
      secret:
        secretName: {{ $v.kafka.tls.caSecret.name }}
        defaultMode: 0444
        items:
          - key: {{ $v.kafka.tls.caSecret.key }}
            path: ca.crt
    {{- end }}
    {{- if $useHistory }}
    - name: postgres-password
      secret:
        secretName: {{ required "history.passwordSecret.name" $v.history.passwordSecret.name }}
        defaultMode: 0440
        items:
          - key: {{ $v.history.passwordSecret.key }}
            path: password
    {{- end }}
    {{- if $needs.kek }}
    - name: kek
      secret:
        secretName: {{ required "privacy.keyEncryptionKeySecret.name" $v.privacy.keyEncryptionKeySecret.name }}
        defaultMode: 0440
        items:
          - key: {{ $v.privacy.keyEncryptionKeySecret.key }}
            path: key
    {{- end }}
    {{- if and $needs.mqtt $mqttLogin.passwordSecret.name }}
    - name: mqtt-password
      secret:
        secretName: {{ $mqttLogin.passwordSecret.name }}
        defaultMode: 0440
        items:
          - key: {{ $mqttLogin.passwordSecret.key }}
            path: password
    {{- end }}
    {{- if and $needs.mqtt $v.mqtt.caSecret.name }}
    - name: mqtt-ca
      secret:
        secretName: {{ $v.mqtt.caSecret.name }}
        defaultMode: 0444
        items:
          - key: {{ $v.mqtt.caSecret.key }}
            path: ca.crt
    {{- end }}
  {{- with .values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .values.affinity }}
  affinity:
    {{- toYaml .values.affinity | nindent 4 }}
  {{- else }}
  # Replicas of one component on different nodes where the cluster allows it.
  topologySpreadConstraints:
    - maxSkew: 1
      topologyKey: kubernetes.io/hostname
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "cityhub.selectorLabels" . | nindent 10 }}
  {{- end }}
{{- end -}}
