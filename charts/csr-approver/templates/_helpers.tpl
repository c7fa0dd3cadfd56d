{{/* Chart name. */}}
{{- define "csr-approver.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: release name, plus the chart name unless the release name contains it. */}}
{{- define "csr-approver.fullname" -}}
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

{{- define "csr-approver.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "csr-approver.selectorLabels" -}}
app.kubernetes.io/name: {{ include "csr-approver.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "csr-approver.labels" -}}
{{ include "csr-approver.selectorLabels" . }}
app.kubernetes.io/component: controller
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "csr-approver.chart" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "csr-approver.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "csr-approver.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "csr-approver.policyConfigMapName" -}}
{{- default (printf "%s-policy" (include "csr-approver.fullname" .)) .Values.policyConfigMap.name -}}
{{- end -}}

{{- define "csr-approver.leaseName" -}}
{{- default (include "csr-approver.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{- define "csr-approver.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* True when the cluster (or `helm template --api-versions`) serves the Prometheus operator API. */}}
{{- define "csr-approver.hasMonitoringAPI" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" -}}true{{- end -}}
{{- end -}}

{{/*
Refuse unsafe combinations at render time, with a message that says what to change.
Included from the Deployment, so `helm template` and `helm install` both stop.
*/}}
{{- define "csr-approver.validate" -}}
{{- $replicas := int .Values.replicas -}}
{{- if and (gt $replicas 1) (not .Values.leaderElection.enabled) -}}
{{- fail (printf "csr-approver: replicas=%d with leaderElection.enabled=false would run %d active approvers racing on every CSR. Set replicas=1, or keep leaderElection.enabled=true (the extra replicas are then hot standbys)." $replicas $replicas) -}}
{{- end -}}
{{- if and .Values.leaderElection.enabled (lt (int .Values.leaderElection.leaseDuration) 5) -}}
{{- fail (printf "csr-approver: leaderElection.leaseDuration=%v is too short (minimum 5 seconds): leadership would flap on any API latency." .Values.leaderElection.leaseDuration) -}}
{{- end -}}
{{- if not (has .Values.logFormat (list "text" "json")) -}}
{{- fail (printf "csr-approver: logFormat=%q: must be text or json." .Values.logFormat) -}}
{{- end -}}
{{- end -}}
