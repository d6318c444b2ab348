{{/* The chart name. */}}
{{- define "apitoken-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's base name: the release name when it already contains the chart name,
otherwise release-chart. With release "apitoken-operator" in namespace "apitoken-system"
every object is named as dist/install.yaml names it.
*/}}
{{- define "apitoken-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "apitoken-operator.serviceAccountName" -}}
{{ include "apitoken-operator.fullname" . }}-controller-manager
{{- end }}

{{- define "apitoken-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "apitoken-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: apitoken-operator
{{- end }}

{{- define "apitoken-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "apitoken-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
control-plane: controller-manager
{{- end }}

{{- define "apitoken-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The name of the metrics port: https when the endpoint is secure. */}}
{{- define "apitoken-operator.metricsPortName" -}}
{{- if .Values.metrics.secure }}https{{ else }}http-metrics{{ end }}
{{- end }}
