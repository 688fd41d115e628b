{{/* Object name prefix: <release>-<chart>, or fullnameOverride; at most 63 characters. */}}
{{- define "celeriac.fullname" -}}
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

{{- define "celeriac.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "celeriac.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "celeriac.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Labels that select the operator pods; never change them after a release (selectors are immutable). */}}
{{- define "celeriac.selectorLabels" -}}
app.kubernetes.io/name: {{ include "celeriac.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "celeriac.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "celeriac.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The namespace the operator watches in namespaced mode. */}}
{{- define "celeriac.watchNamespace" -}}
{{- default .Release.Namespace .Values.watch.namespace -}}
{{- end -}}

{{/* Leader election: forced by operator.leaderElect, else on exactly when there is more than one replica. */}}
{{- define "celeriac.leaderElect" -}}
{{- if kindIs "bool" .Values.operator.leaderElect -}}
{{- .Values.operator.leaderElect -}}
{{- else -}}
{{- gt (int .Values.replicaCount) 1 -}}
{{- end -}}
{{- end -}}

{{/*
The operator's permissions: exactly what it uses (see the operator's RBAC list in the docs).
Leases are not here: they are granted in the release namespace only (leader-election Role).
*/}}
{{- define "celeriac.rules" -}}
- apiGroups: ["celeriac.io"]
  resources: ["taskqueues", "workerpools"]
  verbs: ["get", "list", "watch", "update", "patch"]
{{- /* Status is written by merge patch only. */}}
- apiGroups: ["celeriac.io"]
  resources: ["taskqueues/status", "workerpools/status"]
  verbs: ["patch"]
- apiGroups: ["celeriac.io"]
  resources: ["taskschedules"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["celeriac.io"]
  resources: ["taskschedules/status"]
  verbs: ["patch"]
- apiGroups: ["celeriac.io"]
  resources: ["taskqueues/finalizers", "workerpools/finalizers"]
  verbs: ["update"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
{{- /* Secrets: only those a TaskQueue names, read by name when its broker is checked; never listed or watched. */}}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "patch"]
{{- /* core/v1 Events (k8s/events.ts); the operator never writes events.k8s.io ones, nor reads its own scale subresource. */}}
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}
