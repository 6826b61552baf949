{{/* Names follow `helm create`: release "vision-ai" + chart "vision-ai" -> "vision-ai". */}}
{{- define "vision-ai.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vision-ai.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Component names: <fullname>-backend etc. (truncated so the suffix always fits). */}}
{{- define "vision-ai.backend.fullname" -}}
{{- printf "%s-backend" (include "vision-ai.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}
{{- define "vision-ai.frontend.fullname" -}}
{{- printf "%s-frontend" (include "vision-ai.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}
{{- define "vision-ai.backend.metricsName" -}}
{{- printf "%s-backend-metrics" (include "vision-ai.fullname" . | trunc 47 | trimSuffix "-") }}
{{- end }}
{{- define "vision-ai.cloudflared.fullname" -}}
{{- printf "%s-cloudflared" (include "vision-ai.fullname" . | trunc 51 | trimSuffix "-") }}
{{- end }}

{{- define "vision-ai.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable for the life of a release (Deployment selectors are immutable). */}}
{{- define "vision-ai.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vision-ai.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vision-ai.labels" -}}
helm.sh/chart: {{ include "vision-ai.chart" . }}
{{ include "vision-ai.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vision-ai
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Usage: include "vision-ai.componentSelectorLabels" (dict "ctx" $ "component" "backend") */}}
{{- define "vision-ai.componentSelectorLabels" -}}
{{ include "vision-ai.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "vision-ai.componentLabels" -}}
{{ include "vision-ai.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "vision-ai.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vision-ai.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference. Usage: include "vision-ai.image" (dict "image" .Values.backend.image "registry" .Values.imageRegistry "ctx" $)
A digest, when given, wins over the tag (immutable); the tag defaults to appVersion.
*/}}
{{- define "vision-ai.image" -}}
{{- $registry := default .registry .image.registry -}}
{{- $repo := .image.repository -}}
{{- if $registry }}{{ $repo = printf "%s/%s" $registry $repo }}{{ end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repo .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .ctx.Chart.AppVersion .image.tag | toString) -}}
{{- end -}}
{{- end }}

{{/* API keys: the Secret holding them, created by the chart unless existingSecret is set. */}}
{{- define "vision-ai.apiKeys.secretName" -}}
{{- default (printf "%s-api-keys" (include "vision-ai.fullname" .)) .Values.apiKeys.existingSecret }}
{{- end }}


{{/* Env var sending the client key (frontend, helm test) when API keys are on. */}}
{{- define "vision-ai.apiKeys.clientEnv" -}}
{{- if .Values.apiKeys.enabled -}}
- name: VISION_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "vision-ai.apiKeys.secretName" . }}
      key: {{ .Values.apiKeys.existingSecretKeys.clientKey }}
{{- end }}
{{- end }}

{{- define "vision-ai.backend.url" -}}
{{- printf "http://%s:%v" (include "vision-ai.backend.fullname" .) .Values.backend.service.port }}
{{- end }}

{{- define "vision-ai.cloudflared.secretName" -}}
{{- default (printf "%s-tunnel-token" (include "vision-ai.fullname" .)) .Values.cloudflared.existingSecret }}
{{- end }}

{{/*
Default topology spread: prefer one replica per node; matchLabelKeys keeps old and new
ReplicaSets from skewing each other during a rollout.
Usage: include "vision-ai.topologySpread" (dict "ctx" $ "component" "backend" "values" .Values.backend)
*/}}
{{- define "vision-ai.topologySpread" -}}
{{- if .values.topologySpreadConstraints }}
{{- toYaml .values.topologySpreadConstraints }}
{{- else -}}
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  matchLabelKeys: [pod-template-hash]
  labelSelector:
    matchLabels:
      {{- include "vision-ai.componentSelectorLabels" (dict "ctx" .ctx "component" .component) | nindent 6 }}
{{- end }}
{{- end }}

{{/* httpGet probe. Usage: include "vision-ai.probe" (dict "probe" .Values.backend.livenessProbe "path" "/healthz" "port" "http") */}}
{{- define "vision-ai.probe" -}}
httpGet:
  path: {{ .path }}
  port: {{ .port }}
initialDelaySeconds: {{ .probe.initialDelaySeconds }}
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
successThreshold: {{ .probe.successThreshold }}
{{- end }}

{{/*
VISION_WORKERS for the backend: backend.workers when set (a number or "auto"); otherwise one worker
per whole CPU of resources.limits.cpu (at least 1; "1500m" → 1, so no worker is throttled), and
"auto" (cgroup-aware in the container) when there is no CPU limit.
*/}}
{{- define "vision-ai.backend.workers" -}}
{{- $w := .Values.backend.workers -}}
{{- if and (ne (toString $w) "") (ne (toString $w) "<nil>") -}}
{{- $w -}}
{{- else -}}
{{- $cpu := toString (dig "limits" "cpu" "" (.Values.backend.resources | default dict)) -}}
{{- if eq $cpu "" -}}
auto
{{- else if hasSuffix "m" $cpu -}}
{{- max 1 (div (trimSuffix "m" $cpu | int64) 1000) -}}
{{- else -}}
{{- max 1 (floor (float64 $cpu)) -}}
{{- end -}}
{{- end -}}
{{- end -}}


{{/*
Every check that needs more than one value (values.schema.json, generated from values.yaml plus
scripts/chart-docs/schema-constraints.json, types and bounds each value on its own). All of them
live here so the rules can be read in one place; templates/validate.yaml runs it once per render.
*/}}
{{- define "vision-ai.validate" -}}
{{- if and .Values.apiKeys.enabled (not .Values.apiKeys.existingSecret) (empty .Values.apiKeys.keys) }}
{{- fail "apiKeys.enabled=true needs apiKeys.existingSecret or at least one entry in apiKeys.keys" }}
{{- end }}
{{- $b := .Values.backend }}
{{- if ge (add $b.preStopSleepSeconds $b.drainDelaySeconds $b.shutdownTimeoutSeconds | int) ($b.terminationGracePeriodSeconds | int) }}
{{- fail "backend: preStopSleepSeconds + drainDelaySeconds + shutdownTimeoutSeconds must be < terminationGracePeriodSeconds, or in-flight requests get killed" }}
{{- end }}
{{- $cf := .Values.cloudflared }}
{{- if and $cf.enabled (eq $cf.mode "token") (not $cf.existingSecret) (not $cf.token) }}
{{- fail "cloudflared.mode=token needs cloudflared.existingSecret (recommended) or cloudflared.token" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled .Values.metrics.podMonitor.enabled }}
{{- fail "metrics: enable metrics.serviceMonitor or metrics.podMonitor, not both (every pod would be scraped twice)" }}
{{- end }}
{{- if eq ($b.metricsPort | int) ($b.containerPort | int) }}
{{- fail "backend.metricsPort must differ from backend.containerPort: /metrics has a port of its own" }}
{{- end }}
{{- $ing := .Values.ingress }}
{{- if and $ing.enabled $ing.tls (not $ing.hostname) }}
{{- fail "ingress.tls needs ingress.hostname" }}
{{- end }}
{{- if and $ing.enabled $ing.tls (not $ing.tlsSecretName) }}
{{- fail "ingress.tls needs ingress.tlsSecretName" }}
{{- end }}
{{- end }}

{{/*
NetworkPolicyPeers admitted to a metrics port (the backend's and cloudflared's), as a YAML list:
networkPolicy.metricsClients, plus the release's own namespace minus cloudflared (the bridge to the
internet) when networkPolicy.metricsFromReleaseNamespace. Empty = no rule (a rule without `from`
would admit everyone).
*/}}
{{- define "vision-ai.metricsScrapers" -}}
{{- $np := .Values.networkPolicy }}
{{- $scrapers := $np.metricsClients | default list }}
{{- if $np.metricsFromReleaseNamespace }}
{{- $notTunnel := dict "key" "app.kubernetes.io/component" "operator" "NotIn" "values" (list "cloudflared") }}
{{- $scrapers = append $scrapers (dict "podSelector" (dict "matchExpressions" (list $notTunnel))) }}
{{- end }}
{{- toYaml $scrapers }}
{{- end }}
