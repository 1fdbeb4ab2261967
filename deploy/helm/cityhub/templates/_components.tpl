{{/*
The components the chart runs, each with its values key: (component name -> values key), as YAML
of only those enabled.
*/}}
{{- define "cityhub.enabledComponents" -}}
{{- $all := dict "bridge" "bridge" "worker" "worker" "worker-side" "workerSide" "api" "api" "delivery" "delivery" "history" "historyWriter" -}}
{{- $enabled := dict -}}
{{- range $component, $key := $all -}}
{{- $values := index $.Values $key -}}
{{- if and $values.enabled (or (ne $component "history") $.Values.history.enabled) (or (ne $component "worker-side") (include "cityhub.sideStagesOn" $)) -}}
{{- $_ := set $enabled $component $key -}}
{{- end -}}
{{- end -}}
{{- toYaml $enabled -}}
{{- end -}}

{{/*
"true" when a side stage is switched on in `settings` (CITYHUB_OPEN_DATA__ENABLED,
CITYHUB_HEALTH__ENABLED, both on unless set to a false value), as `has_side_stages` in
cityhub.streams.wiring_worker decides for `cityhub run`; empty when both are off.
*/}}
{{- define "cityhub.sideStagesOn" -}}
{{- $off := list "0" "off" "f" "false" "n" "no" -}}
{{- $on := false -}}
{{- range $name := list "CITYHUB_OPEN_DATA__ENABLED" "CITYHUB_HEALTH__ENABLED" -}}
{{- if not (and (hasKey $.Values.settings $name) (has (index $.Values.settings $name | toString | lower) $off)) -}}
{{- $on = true -}}
{{- end -}}
{{- end -}}
{{- if $on }}true{{ end -}}
{{- end -}}

{{/*
The stages (`cityhub worker --stages`) the worker StatefulSet runs: the pipeline alone when the
worker-side Deployment runs the side stages (open data, device health), else all of them, so
that switching worker-side off loses nothing.
*/}}
{{- define "cityhub.workerStages" -}}
{{- if hasKey (include "cityhub.enabledComponents" . | fromYaml) "worker-side" -}}
pipeline
{{- else -}}
all
{{- end -}}
{{- end -}}

{{/*
The component whose Kafka login (kafka.credentials) and extra egress
(networkPolicy.extraEgress) a component uses: worker-side runs stages of the worker, as its
user (its ACLs hold the side stages' consumer groups), so it has neither of its own.
*/}}
{{- define "cityhub.loginComponent" -}}
{{- ternary "worker" . (eq . "worker-side") -}}
{{- end -}}
