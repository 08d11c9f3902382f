{{/* A batch pod running the xenonscale CLI (featurize, tune, retrain).
     Call with (dict "root" $ "component" NAME "job" VALUES "args" LIST "gpus" N "dask" BOOL);
     optional: "extraEnv" LIST, "initContainers" (rendered YAML, e.g. xenonscale.syncContainers). */}}
{{- define "xenonscale.cliPodSpec" -}}
{{- $root := .root -}}
{{- $job := .job -}}
{{- $gpus := int (default 0 .gpus) -}}
{{ include "xenonscale.podCommon" $root }}
restartPolicy: Never
{{- with .initContainers }}
initContainers:
  {{- . | trim | nindent 2 }}
{{- end }}
containers:
  - name: {{ .component }}
    image: {{ ternary (include "xenonscale.cudaImage" $root) (include "xenonscale.image" $root) (gt $gpus 0) | quote }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    args:
      {{- toYaml .args | nindent 6 }}
    env:
      {{- if .dask }}
      - name: DASK_SCHEDULER_ADDRESS
        value: {{ include "xenonscale.schedulerAddress" $root | quote }}
      {{- end }}
      {{- include "xenonscale.env" $root | nindent 6 }}
      {{- with .extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    resources:
      {{- include "xenonscale.resources" (dict "resources" $job.resources "gpus" $gpus) | trim | nindent 6 }}
    securityContext:
      {{- include "xenonscale.containerSecurityContext" $root | nindent 6 }}
    volumeMounts:
      {{- include "xenonscale.volumeMounts" $root | nindent 6 }}
volumes:
  {{- include "xenonscale.volumes" $root | nindent 2 }}
{{- with $job.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $job.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}


{{/* The sync steps of the retraining CronJob: one init container per entry of
     retrain.sync, `xenonscale sync SOURCE STORE --no-progress ...`, run in
     order before the retrain container; a failed sync stops the pod, so
     retrain never runs on a half-synced store. The API key (retrain.auth)
     comes from a Secret through secretKeyRef and is named by --auth-env
     (the variable's NAME, never its value), opt-in: only entries with
     `auth: true` get it, since a key is sent to the host of each source that
     gets it (the Materials Project key never goes to Alexandria). `auth: true`
     with retrain.auth.secretName empty fails rendering.
     Call with (dict "root" $ "job" .Values.retrain). */}}
{{- define "xenonscale.syncContainers" -}}
{{- $root := .root -}}
{{- $job := .job -}}
{{- $auth := default dict $job.auth -}}
{{- range $i, $entry := $job.sync }}
{{- if and (hasPrefix "s3://" $entry.store) (not $root.Values.storage.s3.enabled) }}
{{- fail (printf "retrain.sync[%d].store %q is on S3: enable storage.s3 (endpoint, credentials)" $i $entry.store) }}
{{- end }}
{{- if and (hasPrefix "/" $entry.store) (not (and $root.Values.storage.pvc.enabled (hasPrefix (printf "%s/" $root.Values.storage.pvc.mountPath) $entry.store))) }}
{{- fail (printf "retrain.sync[%d].store %q is not on the PVC: enable storage.pvc and put the store under storage.pvc.mountPath %q, or use s3://" $i $entry.store $root.Values.storage.pvc.mountPath) }}
{{- end }}
{{- $keyed := eq (toString $entry.auth) "true" }}
{{- if and $keyed (not $auth.secretName) }}
{{- fail (printf "retrain.sync[%d].auth is true but retrain.auth.secretName is empty: set retrain.auth.secretName to an existing Secret with the API key, or drop auth: true from retrain.sync[%d]" $i $i) }}
{{- end }}
{{- $syncArgs := list "sync" $entry.source $entry.store "--no-progress" }}
{{- if $keyed }}{{ $syncArgs = concat $syncArgs (list "--auth-env" $auth.env) }}{{ end }}
{{- if $job.syncOnCluster }}{{ $syncArgs = concat $syncArgs (list "--scheduler" (include "xenonscale.schedulerAddress" $root)) }}{{ end }}
{{- if and $root.Values.storage.s3.enabled $root.Values.storage.s3.storageOptions }}{{ $syncArgs = concat $syncArgs (list "--storage-options" (toJson $root.Values.storage.s3.storageOptions)) }}{{ end }}
{{- $syncArgs = concat $syncArgs (default (list) $entry.args) }}
- name: sync-{{ $i }}
  image: {{ include "xenonscale.image" $root | quote }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  args:
    {{- toYaml $syncArgs | nindent 4 }}
  env:
    {{- include "xenonscale.env" $root | nindent 4 }}
    {{- if $keyed }}
    - name: {{ $auth.env }}
      valueFrom:
        secretKeyRef:
          name: {{ $auth.secretName }}
          key: {{ $auth.secretKey }}
    {{- end }}
  resources:
    {{- include "xenonscale.resources" (dict "resources" $job.resources "gpus" 0) | trim | nindent 4 }}
  securityContext:
    {{- include "xenonscale.containerSecurityContext" $root | nindent 4 }}
  volumeMounts:
    {{- include "xenonscale.volumeMounts" $root | nindent 4 }}
{{- end }}
{{- end -}}
