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

{{/* The operator's labels (docs/conventions.md §2: app.kubernetes.io/* and part-of apextrader). */}}
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

{{/* RBAC rules for the namespaced objects the operator handles (a Role per namespace or a ClusterRole).
Exactly the calls the operator makes (tests/platform/test_rbac.py records them and compares);
docs/security.md says what each one is for. Secrets are in "apextrader.secretRules". */}}
{{- define "apextrader.namespacedRules" }}
# The pipelines: kopf lists and watches them, patches its finalizer and progress annotations, and
# the operator writes only the status subresource (never spec).
- apiGroups: ["apextrader.io"]
  resources: ["tradingpipelines"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["apextrader.io"]
  resources: ["tradingpipelines/status"]
  verbs: ["patch"]
# Children carry ownerReferences with blockOwnerDeletion: the OwnerReferencesPermissionEnforcement
# admission plugin requires update on the owner's finalizers to set it.
- apiGroups: ["apextrader.io"]
  resources: ["tradingpipelines/finalizers"]
  verbs: ["update"]
# What each pipeline is made of: read (GET by name, LIST by the pipeline's instance label), create,
# patch back to what the CR says; delete only what is pruned (canary Deployments and Services).
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "create", "patch"]
- apiGroups: [""]
  resources: ["configmaps", "serviceaccounts"]
  verbs: ["get", "list", "create", "patch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "create", "patch"]
# The managed NATS cluster's disruption budget (3 replicas).
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "create", "patch"]
# kopf posts Events about handler progress, Conflict and InvalidSpec.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if and .Values.rbac.peering (ne .Values.rbac.scope "cluster") }}
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end }}

{{/* Secrets: GET by name (the pipeline key, the NATS users, a live track's exchange credentials,
whose label is checked), create and patch the operator's own. Never list or watch: no other
Secret's content is ever read by a LIST. */}}
{{- define "apextrader.secretRules" }}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch"]
{{- end }}
