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
{{- include "csr-approver.validatePDB" . -}}
{{- end -}}

{{/* A PDB value as a string: "" when unset (null or ""), else "1" or "50%". */}}
{{- define "csr-approver.intOrPercent" -}}
{{- if not (kindIs "invalid" .) -}}{{- toString . -}}{{- end -}}
{{- end -}}

{{/*
The PodDisruptionBudget's bound, "minAvailable: <v>" or "maxUnavailable: <v>", or nothing
when no PDB is rendered: disabled, no replicas, or neither bound set with one replica.
Neither bound set means minAvailable 1 when replicas > 1 (what deploy/ ships).
*/}}
{{- define "csr-approver.pdbBound" -}}
{{- $pdb := .Values.podDisruptionBudget -}}
{{- $replicas := int .Values.replicas -}}
{{- $min := include "csr-approver.intOrPercent" $pdb.minAvailable -}}
{{- $max := include "csr-approver.intOrPercent" $pdb.maxUnavailable -}}
{{- if and $pdb.enabled (gt $replicas 0) -}}
{{- if ne $min "" -}}
minAvailable: {{ if hasSuffix "%" $min }}{{ $min | quote }}{{ else }}{{ int $min }}{{ end }}
{{- else if ne $max "" -}}
maxUnavailable: {{ if hasSuffix "%" $max }}{{ $max | quote }}{{ else }}{{ int $max }}{{ end }}
{{- else if gt $replicas 1 -}}
minAvailable: 1
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Refuse a PodDisruptionBudget that allows no eviction at all: it blocks every drain of a node
running a csr-approver pod, forever. On single-node OpenShift that is every update (the
Machine Config Operator drains the node). Rounding as the disruption controller does:
percentages round up, so minAvailable p% of n keeps ceil(n*p/100) pods.
*/}}
{{- define "csr-approver.validatePDB" -}}
{{- $pdb := .Values.podDisruptionBudget -}}
{{- $replicas := int .Values.replicas -}}
{{- $min := include "csr-approver.intOrPercent" $pdb.minAvailable -}}
{{- $max := include "csr-approver.intOrPercent" $pdb.maxUnavailable -}}
{{- if and $pdb.enabled (gt $replicas 0) -}}
{{- if and (ne $min "") (ne $max "") -}}
{{- fail (printf "csr-approver: podDisruptionBudget.minAvailable=%s and podDisruptionBudget.maxUnavailable=%s are both set; a PodDisruptionBudget takes one of them. Keep maxUnavailable alone (maxUnavailable=1 never blocks a drain), or minAvailable alone." $min $max) -}}
{{- end -}}
{{- $blocks := false -}}
{{- $field := "" -}}
{{- $value := "" -}}
{{- if ne $min "" -}}
{{- $field = "minAvailable" -}}{{- $value = $min -}}
{{- if hasSuffix "%" $min -}}
{{- $blocks = gt (mul $replicas (int (trimSuffix "%" $min))) (mul 100 (sub $replicas 1)) -}}
{{- else -}}
{{- $blocks = ge (int $min) $replicas -}}
{{- end -}}
{{- else if ne $max "" -}}
{{- $field = "maxUnavailable" -}}{{- $value = $max -}}
{{- $blocks = eq (int (trimSuffix "%" $max)) 0 -}}
{{- end -}}
{{- if $blocks -}}
{{- $instead := "podDisruptionBudget.maxUnavailable=1 in place of minAvailable, or more replicas than minAvailable" -}}
{{- if eq $field "maxUnavailable" -}}{{- $instead = "podDisruptionBudget.maxUnavailable=1" -}}{{- end -}}
{{- fail (printf "csr-approver: replicas=%d with podDisruptionBudget.%s=%s allows no eviction: every drain of a node running csr-approver would block (on single-node OpenShift the Machine Config Operator's drain, so every update, never completes). Set podDisruptionBudget.enabled=false (values-sno.yaml does, with replicas=1), or %s." $replicas $field $value $instead) -}}
{{- end -}}
{{- end -}}
{{- end -}}
