{{/*
The components the chart runs, each with its values key: (component name -> values key), as YAML
of only those enabled.
*/}}
{{- define "cityhub.enabledComponents" -}}
{{- $all := dict "bridge" "bridge" "worker" "worker" "api" "api" "delivery" "delivery" "history" "historyWriter" -}}
{{- $enabled := dict -}}
{{- range $component, $key := $all -}}
{{- $values := index $.Values $key -}}
{{- if and $values.enabled (or (ne $component "history") $.Values.history.enabled) -}}
{{- $_ := set $enabled $component $key -}}
{{- end -}}
{{- end -}}
{{- toYaml $enabled -}}
{{- end -}}
