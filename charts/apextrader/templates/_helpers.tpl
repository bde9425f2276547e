{{/* Name of the chart's objects: the release name, or fullnameOverride. */}}
{{- define "apextrader.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "apextrader.operatorName" -}}
{{- printf "%s-operator" (include "apextrader.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The operator's labels (CONVENTIONS.md 2: app.kubernetes.io/* and part-of apextrader). */}}
{{- define "apextrader.selectorLabels" -}}
app.kubernetes.io/name: apextrader-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "apextrader.labels" -}}
{{ include "apextrader.selectorLabels" . }}
app.kubernetes.io/part-of: apextrader
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "apextrader.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "apextrader.operatorName" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* The image every process runs (`apex operator`, `apex agent NAME`). */}}
{{- define "apextrader.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* Agents' default image (APEX_AGENT_IMAGE); a pipeline's spec.image overrides it. */}}
{{- define "apextrader.agentImage" -}}
{{- if .Values.agentImage.repository -}}
{{- printf "%s:%s" .Values.agentImage.repository (.Values.agentImage.tag | default .Chart.AppVersion) -}}
{{- else -}}
{{- include "apextrader.image" . -}}
{{- end -}}
{{- end -}}

{{/* Namespaces the operator watches when rbac.scope is "namespace" (default: the release's). */}}
{{- define "apextrader.watchNamespaces" -}}
{{- $ns := .Values.watchNamespaces | default (list .Release.Namespace) -}}
{{- toJson $ns -}}
{{- end -}}

{{/* The "restricted" Pod Security Standard, for every container of the chart. */}}
{{- define "apextrader.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "apextrader.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* RBAC rules for the namespaced objects the operator handles (a Role per namespace or a ClusterRole). */}}
{{- define "apextrader.namespacedRules" }}
# The pipelines: the operator reads spec and writes only status (and kopf's finalizers/annotations).
- apiGroups: ["apextrader.io"]
  resources: ["tradingpipelines"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["apextrader.io"]
  resources: ["tradingpipelines/status"]
  verbs: ["get", "patch", "update"]
# What each pipeline is made of (CONVENTIONS.md 2): agents, the managed NATS, config, policies.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps", "serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# The managed NATS cluster's disruption budget (3 replicas).
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "create", "patch"]
{{- if .Values.rbac.manageSecrets }}
# Per-agent NATS user credentials; never list/watch, so other Secrets stay unread.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "update", "patch", "delete"]
{{- end }}
# kopf posts events about handler progress and errors.
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if and .Values.rbac.peering (ne .Values.rbac.scope "cluster") }}
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end }}
