{{/* Names and labels shared by every template. */}}

{{/* The control plane's name: its Deployment, Service, ServiceAccount and identity. */}}
{{- define "strait.controlPlane" -}}strait-control-plane{{- end -}}

{{/* Labels every object of the release carries. */}}
{{- define "strait.labels" -}}
app.kubernetes.io/part-of: strait
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end -}}

{{/* The control plane pods' selector (a subset of their labels; never changes on upgrade). */}}
{{- define "strait.selector" -}}
app.kubernetes.io/name: {{ include "strait.controlPlane" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The DNS names the control plane's Service answers to inside the cluster. */}}
{{- define "strait.serviceNames" -}}
{{- $name := include "strait.controlPlane" . -}}
{{- $ns := .Release.Namespace -}}
{{- list $name (printf "%s.%s" $name $ns) (printf "%s.%s.svc" $name $ns) (printf "%s.%s.svc.%s" $name $ns .Values.clusterDomain) | toJson -}}
{{- end -}}

{{/* An image reference; the tag defaults to the chart's appVersion. */}}
{{- define "strait.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* Secret names. */}}
{{- define "strait.identitySecret" -}}strait-identity{{- end -}}
{{- define "strait.injectorTlsSecret" -}}strait-injector-tls{{- end -}}
{{- define "strait.injectorConfig" -}}strait-injector-config{{- end -}}
