{{/* Name of a service's resources: <release>-<service>. */}}
{{- define "onething.name" -}}
{{- printf "%s-%s" .root.Release.Name .service | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of a service's resources. */}}
{{- define "onething.labels" -}}
app.kubernetes.io/name: onething
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* Selector labels of a service's pods. */}}
{{- define "onething.selector" -}}
app.kubernetes.io/name: onething
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .service }}
{{- end -}}

{{/* The service name the binary knows (exit-entry → exit_entry). */}}
{{- define "onething.role" -}}
{{- .service | replace "-" "_" -}}
{{- end -}}

{{/* Checksum of the JWKS: the chart's own, or the external ConfigMap's as it is now. */}}
{{- define "onething.jwksChecksum" -}}
{{- $jwks := .Values.auth.jwks -}}
{{- if not $jwks -}}
{{- with (lookup "v1" "ConfigMap" .Release.Namespace .Values.auth.jwksConfigMap) -}}
{{- $jwks = toJson .data -}}
{{- end -}}
{{- end -}}
{{- $jwks | sha256sum -}}
{{- end -}}
