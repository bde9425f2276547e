{{/* The pipeline's name: values.name, or the release name (a DNS-1035 label, at most 39 characters). */}}
{{- define "trading-pipeline.name" -}}
{{- .Values.name | default .Release.Name -}}
{{- end -}}
