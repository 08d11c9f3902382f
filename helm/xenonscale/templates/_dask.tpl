{{/* Dask pod specs, shared by the operator (DaskCluster) and the plain
     Deployment modes. Call with (dict "root" $ "group" VALUES "gpu" BOOL). */}}

{{- define "xenonscale.schedulerPodSpec" -}}
{{- $root := . -}}
{{- $s := .Values.dask.scheduler -}}
{{ include "xenonscale.podCommon" $root }}
containers:
  - name: scheduler
    image: {{ include "xenonscale.image" $root | quote }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    command:
      - dask
      - scheduler
    args:
      - --port
      - "8786"
      - --dashboard-address
      - ":8787"
    ports:
      - name: tcp-comm
        containerPort: 8786
        protocol: TCP
      - name: http-dashboard
        containerPort: 8787
        protocol: TCP
    readinessProbe:
      httpGet:
        port: http-dashboard
        path: /health
      initialDelaySeconds: 5
      periodSeconds: 10
    livenessProbe:
      httpGet:
        port: http-dashboard
        path: /health
      initialDelaySeconds: 15
      periodSeconds: 20
    env:
      {{- include "xenonscale.env" $root | nindent 6 }}
      {{- with $s.env }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    resources:
      {{- include "xenonscale.resources" (dict "resources" $s.resources) | trim | nindent 6 }}
    securityContext:
      {{- include "xenonscale.containerSecurityContext" $root | nindent 6 }}
    volumeMounts:
      {{- include "xenonscale.volumeMounts" $root | nindent 6 }}
volumes:
  {{- include "xenonscale.volumes" $root | nindent 2 }}
{{- with $s.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $s.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $s.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "xenonscale.workerPodSpec" -}}
{{- $root := .root -}}
{{- $g := .group -}}
{{ include "xenonscale.podCommon" $root }}
terminationGracePeriodSeconds: 60
containers:
  - name: worker
    image: {{ ternary (include "xenonscale.cudaImage" $root) (include "xenonscale.image" $root) .gpu | quote }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    command:
      - dask
      - worker
    args:
      - --name
      - $(DASK_WORKER_NAME)
      - --nthreads
      - {{ $g.nthreads | quote }}
      - --nworkers
      - {{ default 1 $g.nworkers | quote }}
      - --memory-limit
      - {{ $g.memoryLimit | quote }}
      - --dashboard-address
      - ":8788"
      - --local-directory
      - /tmp/dask-worker-space
      {{- if .gpu }}
      - --resources
      - {{ printf "GPU=%v" $g.gpus | quote }}
      {{- end }}
    ports:
      - name: http-dashboard
        containerPort: 8788
        protocol: TCP
    livenessProbe:
      httpGet:
        port: http-dashboard
        path: /health
      initialDelaySeconds: 30
      periodSeconds: 30
      timeoutSeconds: 10
      failureThreshold: 6
    env:
      {{- if eq $root.Values.dask.mode "deployment" }}
      {{- /* the operator injects both itself (and names workers after their Deployments) */}}
      - name: DASK_SCHEDULER_ADDRESS
        value: {{ include "xenonscale.schedulerAddress" $root | quote }}
      - name: DASK_WORKER_NAME
        valueFrom:
          fieldRef:
            fieldPath: metadata.name
      {{- end }}
      {{- include "xenonscale.env" $root | nindent 6 }}
      {{- with $g.env }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    resources:
      {{- include "xenonscale.resources" (dict "resources" $g.resources "gpus" (ternary $g.gpus 0 .gpu)) | trim | nindent 6 }}
    securityContext:
      {{- include "xenonscale.containerSecurityContext" $root | nindent 6 }}
    volumeMounts:
      {{- include "xenonscale.volumeMounts" $root | nindent 6 }}
volumes:
  {{- include "xenonscale.volumes" $root | nindent 2 }}
{{- with $g.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $g.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $g.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
