{{/* A batch pod running the xenonscale CLI (featurize, tune, retrain).
     Call with (dict "root" $ "component" NAME "job" VALUES "args" LIST "gpus" N "dask" BOOL). */}}
{{- define "xenonscale.cliPodSpec" -}}
{{- $root := .root -}}
{{- $job := .job -}}
{{- $gpus := int (default 0 .gpus) -}}
{{ include "xenonscale.podCommon" $root }}
restartPolicy: Never
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
