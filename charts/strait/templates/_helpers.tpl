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
{{- define "strait.injectorCertificate" -}}strait-injector{{- end -}}
{{- define "strait.injectorConfig" -}}strait-injector-config{{- end -}}
{{- define "strait.injectorWebhook" -}}strait-sidecar-injector{{- end -}}
{{/* Non-empty when the injector serves a certificate from the Secret (cert-manager's or the
values' PEMs); empty by default, when the control plane serves its own and keeps the
webhook's caBundle (--injector-webhook). */}}
{{- define "strait.injectorTlsSecretUsed" -}}
{{- if or .Values.injector.tls.certManager.enabled .Values.injector.tls.certPEM -}}true{{- end -}}
{{- end -}}

{{/*
The mesh CA, in one of three shapes (identity.generate, identity.issuerSecret, or the PEMs in
values): the control plane's flags for it, the volumes holding it, and their mounts. Nothing
here generates key material, so every render is the same.
*/}}
{{- define "strait.caMode" -}}
{{- if .Values.identity.generate -}}generated{{- else if .Values.identity.issuerSecret -}}external{{- else -}}values{{- end -}}
{{- end -}}

{{- define "strait.caArgs" -}}
{{- $mode := include "strait.caMode" . -}}
{{- $anchors := .Values.identity.trustAnchors -}}
{{- if eq $mode "generated" }}
- --ca-secret
- {{ include "strait.identitySecret" . }}
{{- end }}
{{- if eq $mode "values" }}
- --trust-anchors
- /var/run/strait/identity/trust-anchors.pem
- --issuer-cert
- /var/run/strait/identity/issuer.crt
- --issuer-key
- /var/run/strait/identity/issuer.key
{{- else }}
- --trust-anchors
{{- if eq $anchors.source "configMap" }}
- /var/run/strait/trust-anchors/{{ $anchors.configMap.key }}
{{- else if eq $anchors.source "clusterTrustBundle" }}
- /var/run/strait/trust-anchors/ca-bundle.pem
{{- else }}
- /var/run/strait/identity/ca.crt
{{- end }}
- --issuer-cert
- /var/run/strait/identity/tls.crt
- --issuer-key
- /var/run/strait/identity/tls.key
{{- end }}
{{- end -}}

{{- define "strait.caMounts" -}}
- name: identity
  mountPath: /var/run/strait/identity
  readOnly: true
{{- if ne .Values.identity.trustAnchors.source "issuerSecret" }}
- name: trust-anchors
  mountPath: /var/run/strait/trust-anchors
  readOnly: true
{{- end }}
{{- end -}}

{{- define "strait.caVolumes" -}}
{{- $mode := include "strait.caMode" . -}}
{{- $anchors := .Values.identity.trustAnchors -}}
- name: identity
  secret:
    secretName: {{ if eq $mode "external" }}{{ .Values.identity.issuerSecret }}{{ else }}{{ include "strait.identitySecret" . }}{{ end }}
    # 0440, written in decimal: YAML 1.1 and 1.2 read a leading zero differently.
    defaultMode: 288
    {{- if eq $mode "generated" }}
    # The control plane creates it at first start (through the API, which it reads first);
    # the mount catches up within the kubelet's sync period and carries later changes.
    optional: true
    {{- end }}
{{- if eq $anchors.source "configMap" }}
- name: trust-anchors
  configMap:
    name: {{ $anchors.configMap.name }}
    items:
      - key: {{ $anchors.configMap.key }}
        path: {{ $anchors.configMap.key }}
{{- else if eq $anchors.source "clusterTrustBundle" }}
- name: trust-anchors
  projected:
    sources:
      - clusterTrustBundle:
          {{- with $anchors.clusterTrustBundle.name }}
          name: {{ . }}
          {{- end }}
          {{- with $anchors.clusterTrustBundle.signerName }}
          signerName: {{ . }}
          {{- end }}
          {{- with $anchors.clusterTrustBundle.labelSelector }}
          labelSelector:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          path: ca-bundle.pem
{{- end }}
{{- end -}}
