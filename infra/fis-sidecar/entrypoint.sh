#!/bin/bash
# The FIS sidecar: registers this task as an SSM managed instance, then runs the SSM agent,
# through which FIS sends its aws:ecs:task documents.
#
# It does not create the activation: the app's task role cannot (no ssm:CreateActivation, no
# iam:PassRole). The activation broker, an SSM Automation that EventBridge starts when the
# task is RUNNING (infra/modules/fis, sidecar-activation.yaml), creates a one-registration
# activation tagged with this task's ARN and leaves its id and code, encrypted, in the
# parameter ${ACTIVATION_PARAMETER_PREFIX}/<task id>; it deletes both once the task has
# registered, and deregisters the managed instance when the task stops.
#
# Not essential: if this fails the service runs on and only the brownout and aws-slow
# experiments fail (FIS finds no managed instance for the task).
set -euo pipefail

: "${ACTIVATION_PARAMETER_PREFIX:?the task definition sets it}"
wait_seconds=${ACTIVATION_WAIT_SECONDS:-600}

metadata=$(curl -fsS "${ECS_CONTAINER_METADATA_URI_V4}/task")
task_arn=$(jq -er .TaskARN <<<"$metadata")
zone=$(jq -er .AvailabilityZone <<<"$metadata")
region=${zone%?}
parameter="${ACTIVATION_PARAMETER_PREFIX}/${task_arn##*/}"

deadline=$((SECONDS + wait_seconds))
until activation=$(aws ssm get-parameter --region "$region" --name "$parameter" \
        --with-decryption --query Parameter.Value --output text 2>/dev/null); do
    if ((SECONDS >= deadline)); then
        echo "no activation in $parameter after ${wait_seconds}s: is the broker's EventBridge rule enabled?" >&2
        exit 1
    fi
    sleep 5
done

amazon-ssm-agent -register -region "$region" \
    -id "$(jq -er .id <<<"$activation")" -code "$(jq -er .code <<<"$activation")"
unset activation

# FIS's documents schedule their own rollback with at.
atd

agent=
trap '[[ -n $agent ]] && kill -TERM "$agent" 2>/dev/null; true' TERM INT
amazon-ssm-agent &
agent=$!
wait "$agent"
