{{/* The release's resource name: the release name, or "<release>-tuneship" when it does not contain the chart's. */}}
{{- define "tuneship.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "tuneship.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the Triton pods. */}}
{{- define "tuneship.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tuneship.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: triton
{{- end -}}

{{- define "tuneship.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "tuneship.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: tuneship
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "tuneship.autoscaling" -}}
{{- if and .Values.autoscaling.hpa.enabled .Values.autoscaling.keda.enabled -}}
{{- fail "autoscaling: enable either hpa or keda, not both (both would own the replica count)" -}}
{{- end -}}
{{- if or .Values.autoscaling.hpa.enabled .Values.autoscaling.keda.enabled -}}true{{- end -}}
{{- end -}}

{{/* The per-pod queue time in ms, as PromQL over Triton's counters (the adapter's rule and KEDA's query). */}}
{{- define "tuneship.queueLatencyQuery" -}}
sum(rate(nv_inference_queue_duration_us{namespace="{{ .Release.Namespace }}",pod=~"{{ include "tuneship.fullname" . }}-.*"}[1m])) / clamp_min(sum(rate(nv_inference_request_success{namespace="{{ .Release.Namespace }}",pod=~"{{ include "tuneship.fullname" . }}-.*"}[1m])), 1) / 1000
{{- end -}}
