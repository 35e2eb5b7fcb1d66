{{/* The release's base name: the release name, with the chart's name unless it holds it. */}}
{{- define "sonde.fullname" -}}
{{- if eq .Release.Name .Chart.Name -}}
{{ .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else -}}
{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" }}
{{- end -}}
{{- end -}}

{{/* Labels every object carries, beside its component's selector labels. */}}
{{- define "sonde.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: sonde
{{- end -}}

{{- define "sonde.agent.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end -}}

{{- define "sonde.store.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: store
{{- end -}}

{{- define "sonde.reconciler.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: reconciler
{{- end -}}

{{- define "sonde.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* Where the agents send spans: export.endpoint, else the embedded store's OTLP port. */}}
{{- define "sonde.endpoint" -}}
{{- if .Values.export.endpoint -}}
{{ .Values.export.endpoint }}
{{- else if .Values.store.enabled -}}
{{- if eq .Values.export.protocol "grpc" -}}
http://{{ include "sonde.fullname" . }}-store.{{ .Release.Namespace }}.svc:4317
{{- else -}}
http://{{ include "sonde.fullname" . }}-store.{{ .Release.Namespace }}.svc:4318
{{- end -}}
{{- else -}}
{{ fail "export.endpoint is required when store.enabled is false: the agents need a Tempo's OTLP endpoint, e.g. http://tempo-distributor.tempo.svc:4317" }}
{{- end -}}
{{- end -}}
