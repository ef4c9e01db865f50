{{- define "tessera.labels" -}}
app.kubernetes.io/name: tessera
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "tessera.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "tessera.fullname" -}}
{{- if contains "tessera" .Release.Name }}{{ .Release.Name | trunc 50 | trimSuffix "-" }}{{ else }}{{ printf "%s-tessera" .Release.Name | trunc 50 | trimSuffix "-" }}{{ end }}
{{- end }}

{{- /* A uuid derived from the release (stable across upgrades): (list $ "what"). */ -}}
{{- define "tessera.derivedUUID" -}}
{{- $ctx := index . 0 -}}
{{- $h := sha256sum (printf "tessera/%s/%s/%s" $ctx.Release.Namespace $ctx.Release.Name (index . 1)) -}}
{{- printf "%s-%s-%s-%s-%s" (substr 0 8 $h) (substr 8 12 $h) (substr 12 16 $h) (substr 16 20 $h) (substr 20 32 $h) -}}
{{- end }}

{{- define "tessera.clusterUUID" -}}
{{- .Values.cluster.uuid | default (include "tessera.derivedUUID" (list . "cluster")) -}}
{{- end }}

{{- define "tessera.groupUUID" -}}
{{- .Values.cluster.firstGroup | default (include "tessera.derivedUUID" (list . "group")) -}}
{{- end }}

{{- define "tessera.chapSecret" -}}
{{- .Values.chap.existingSecret | default (printf "%s-chap" (include "tessera.fullname" .)) -}}
{{- end }}

{{- /* The CHAP credential every Tessera process reads from its environment. */ -}}
{{- define "tessera.chapEnv" -}}
- name: TESSERA_CHAP_USER
  valueFrom: {secretKeyRef: {name: {{ include "tessera.chapSecret" . }}, key: user}}
- name: TESSERA_CHAP_SECRET
  valueFrom: {secretKeyRef: {name: {{ include "tessera.chapSecret" . }}, key: secret}}
{{- end }}
