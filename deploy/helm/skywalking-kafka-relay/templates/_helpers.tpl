{{/* The release's objects are named after the release, or release-chart when the release name
does not say what it is. */}}
{{- define "relay.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The component label, as the Kustomize kit names the modes. */}}
{{- define "relay.component" -}}
{{- if eq .Values.mode "daemonset" }}node-relay{{ else }}gateway{{ end -}}
{{- end -}}

{{- define "relay.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ include "relay.component" . }}
{{- end -}}

{{- define "relay.labels" -}}
{{ include "relay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* A relay setting: the value when set, else the mode's default. */}}
{{- define "relay.setting" -}}
{{- $value := index .root.Values .name -}}
{{- if kindIs "invalid" $value -}}
{{- $value = index (index .root.Values.modeDefaults .root.Values.mode) .name -}}
{{- end -}}
{{- toYaml $value -}}
{{- end -}}

{{/* The Secret with the token and the SASL password: the operator's, or the chart's. */}}
{{- define "relay.secretName" -}}
{{- .Values.auth.existingSecret | default (include "relay.fullname" .) -}}
{{- end -}}

{{- define "relay.ownsSecret" -}}
{{- if and (not .Values.auth.existingSecret) (or .Values.auth.token .Values.auth.kafkaSaslPassword) }}true{{ end -}}
{{- end -}}

{{- define "relay.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The hardened context every container of the chart runs with ("restricted"). */}}
{{- define "relay.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
