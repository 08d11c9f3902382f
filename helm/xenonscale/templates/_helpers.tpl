{{/* vim: set filetype=mustache: */}}

{{- define "xenonscale.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Every object is named after the release (or fullnameOverride), so the
     scheduler Service is RELEASE-scheduler in both Dask modes. */}}
{{- define "xenonscale.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "xenonscale.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "xenonscale.selectorLabels" -}}
app.kubernetes.io/name: {{ include "xenonscale.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "xenonscale.labels" -}}
helm.sh/chart: {{ include "xenonscale.chart" . }}
{{ include "xenonscale.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: xenonscale
{{- end -}}

{{- define "xenonscale.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "xenonscale.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "xenonscale.schedulerName" -}}
{{- printf "%s-scheduler" (include "xenonscale.fullname" .) -}}
{{- end -}}

{{/* The scheduler's address for clients inside the namespace (both modes:
     the operator names its Service CLUSTER-scheduler as well). */}}
{{- define "xenonscale.schedulerAddress" -}}
{{- printf "tcp://%s:8786" (include "xenonscale.schedulerName" .) -}}
{{- end -}}

{{- define "xenonscale.image" -}}
{{- printf "%s:%s" .Values.image.repository (default (printf "%s-cpu" .Chart.AppVersion) .Values.image.tag) -}}
{{- end -}}

{{- define "xenonscale.cudaImage" -}}
{{- printf "%s:%s" .Values.image.repository (default (printf "%s-cuda" .Chart.AppVersion) .Values.image.cudaTag) -}}
{{- end -}}

{{- define "xenonscale.dataClaim" -}}
{{- default (printf "%s-data" (include "xenonscale.fullname" .)) .Values.storage.pvc.existingClaim -}}
{{- end -}}

{{/* Pod-level security: numeric non-root user, RuntimeDefault seccomp. */}}
{{- define "xenonscale.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
{{- with .Values.securityContext.fsGroup }}
fsGroup: {{ . }}
fsGroupChangePolicy: OnRootMismatch
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "xenonscale.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Pod settings shared by every pod of the release. */}}
{{- define "xenonscale.podCommon" -}}
serviceAccountName: {{ include "xenonscale.serviceAccountName" . }}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- include "xenonscale.podSecurityContext" . | nindent 2 }}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* Volumes of every pod: emptyDirs for the writable paths of the read-only
     root filesystem, the Dask configuration, the data PVC. */}}
{{- define "xenonscale.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.scratch.tmpSizeLimit }}
- name: home
  emptyDir:
    sizeLimit: {{ .Values.scratch.homeSizeLimit }}
- name: dask-config
  configMap:
    name: {{ include "xenonscale.fullname" . }}-dask-config
{{- if .Values.storage.pvc.enabled }}
- name: data
  persistentVolumeClaim:
    claimName: {{ include "xenonscale.dataClaim" . }}
{{- end }}
{{- end -}}

{{- define "xenonscale.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/xenonscale
- name: dask-config
  mountPath: /etc/xenonscale/dask
  readOnly: true
{{- if .Values.storage.pvc.enabled }}
- name: data
  mountPath: {{ .Values.storage.pvc.mountPath }}
{{- end }}
{{- end -}}

{{/* Environment of every container: Dask config, caches, S3, zoo. */}}
{{- define "xenonscale.env" -}}
- name: DASK_CONFIG
  value: /etc/xenonscale/dask
- name: HOME
  value: /home/xenonscale
- name: XENONSCALE_CACHE_DIR
  value: /home/xenonscale/.cache/xenonscale
- name: MPLCONFIGDIR
  value: /tmp/matplotlib
{{- with .Values.storage.s3 }}
{{- if and .enabled (ne .credentialsFrom "serviceAccount") }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .secretAccessKeyKey }}
{{- end }}
{{- if .enabled }}
{{- with .endpoint }}
- name: AWS_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with .region }}
- name: AWS_DEFAULT_REGION
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if .Values.database.existingSecret }}
- name: XENONSCALE_ZOO
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret }}
      key: {{ .Values.database.zooUrlKey }}
{{- else if and .Values.zoo.folder .Values.storage.pvc.enabled }}
- name: XENONSCALE_ZOO
  value: {{ .Values.zoo.folder | quote }}
{{- end }}
{{- with .Values.zoo.artifacts }}
- name: XENONSCALE_ZOO_ARTIFACTS
  value: {{ . | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* --storage-options JSON for the CLI, when storage.s3.storageOptions is set. */}}
{{- define "xenonscale.storageOptionsArgs" -}}
{{- if and .Values.storage.s3.enabled .Values.storage.s3.storageOptions }}
- --storage-options
- {{ .Values.storage.s3.storageOptions | toJson | quote }}
{{- end }}
{{- end -}}

{{/* Cross-field checks the schema cannot phrase clearly. */}}
{{- define "xenonscale.validate" -}}
{{- if and .Values.retrain.enabled (not .Values.database.existingSecret) -}}
{{- if not .Values.zoo.folder -}}
{{- fail "retrain.enabled needs a zoo: set zoo.folder (on the PVC) or database.existingSecret + zoo.artifacts" -}}
{{- end -}}
{{- if not .Values.storage.pvc.enabled -}}
{{- fail (printf "zoo.folder %q would live in a pod's scratch space: enable storage.pvc (and put the folder under storage.pvc.mountPath) or use database.existingSecret + zoo.artifacts" .Values.zoo.folder) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.storage.pvc.enabled (not .Values.database.existingSecret) .Values.zoo.folder -}}
{{- if not (hasPrefix (printf "%s/" .Values.storage.pvc.mountPath) .Values.zoo.folder) -}}
{{- fail (printf "zoo.folder %q is not on the PVC: put it under storage.pvc.mountPath %q" .Values.zoo.folder .Values.storage.pvc.mountPath) -}}
{{- end -}}
{{- end -}}
{{- if and (hasPrefix "s3://" (toString .Values.zoo.artifacts)) (not .Values.storage.s3.enabled) -}}
{{- fail (printf "zoo.artifacts %q is on S3: enable storage.s3 (endpoint, credentials)" .Values.zoo.artifacts) -}}
{{- end -}}
{{- if not .Values.storage.s3.enabled -}}
{{- range $what, $url := dict "featurize.input" .Values.featurize.input "featurize.output" .Values.featurize.output "tune.store" .Values.tune.store -}}
{{- if hasPrefix "s3://" (toString $url) -}}
{{- fail (printf "%s %q is on S3: enable storage.s3 (endpoint, credentials)" $what $url) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* requests/limits with every quantity as a string: the DaskCluster and
     DaskWorkerGroup CRDs type quantities as strings (no int-or-string), so a
     bare `cpu: 1` or a GPU count would be refused by the API server.
     Call with (dict "resources" VALUES "gpus" N). */}}
{{- define "xenonscale.resources" -}}
{{- $gpus := int (default 0 .gpus) -}}
{{- range $section := list "requests" "limits" }}
{{ $section }}:
  {{- range $name, $qty := index $.resources $section }}
  {{ $name }}: {{ toString $qty | quote }}
  {{- end }}
  {{- if and (eq $section "limits") (gt $gpus 0) }}
  nvidia.com/gpu: {{ toString $gpus | quote }}
  {{- end }}
{{- end }}
{{- end -}}
