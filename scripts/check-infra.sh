#!/usr/bin/env bash
# Checks of infra/ that need no AWS account. Non-interactive, bounded in time, exits non-zero on
# any finding:
#   1. terraform fmt (skipped, with a message, where terraform is not installed);
#   2. checkov in its own virtualenv (.venv-checkov, created on first use);
#   3. terraform validate and one plan per switch combination below, the first way that works:
#      a. the shared offline checker, ../shared/tools/terraform-check/run beside the repository
#         (TERRAFORM_CHECK overrides the path): the real Terraform CLI against a mock provider
#         serving the hashicorp/aws schema, plus a schema check of every argument and
#         reference; any ERROR or WARN fails;
#      b. else, when `terraform init` can download the AWS provider (tried first in a
#         temporary copy, with a short timeout): the real init and validate. Not plan: its
#         data sources (caller identity, availability zones) call AWS, so it needs credentials;
#      c. else: nothing, and it says what was skipped.
# Every checkov skip is written inline in the HCL, with its reason:
#   #checkov:skip=CKV_AWS_XXX:why this check does not apply here
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

status=0

echo "== terraform fmt"
if command -v terraform >/dev/null 2>&1; then
    if ! terraform fmt -check -recursive -diff infra; then
        echo "terraform fmt: files above need 'terraform fmt -recursive infra'" >&2
        status=1
    fi
else
    echo "terraform not installed: fmt check skipped"
fi

echo "== checkov"
venv=.venv-checkov
if ! "$venv/bin/checkov" --version 2>/dev/null | grep -qx "3.3.30"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet "checkov==3.3.30"
fi
# Offline: no Prisma Cloud mapping, no external module or policy download.
if ! BC_SKIP_MAPPING=TRUE "$venv/bin/checkov" --skip-download --framework terraform -d infra \
        --compact --quiet; then
    status=1
fi

# The switch combinations whose plans differ: the three deployments of the experiments
# (every AFTER; the db-outage BEFORE; the failover BEFORE) and degradation without the proxy,
# as a lab deploys them (plain HTTP, said explicitly: HTTPS is required otherwise); the
# production shape (HTTPS, NAT, three AZs); and a chaos deployment (the fault-injection
# sidecar, the ALB validating a bearer token).
lab="image_tag=t allow_plain_http_for_lab=true"
cert="certificate_arn=arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
var_sets=(
    "$lab"
    "$lab enable_degradation=false"
    "$lab enable_proxy=false enable_degradation=false"
    "$lab enable_proxy=false"
    "image_tag=t aws_api_access=nat az_count=3 domain_name=shop.example.com $cert"
    "image_tag=t enable_task_fault_injection=true $cert"
)

echo "== terraform validate and plan"
checker=${TERRAFORM_CHECK:-$(dirname "$repo")/shared/tools/terraform-check/run}
if ! command -v terraform >/dev/null 2>&1; then
    echo "terraform not installed: validate and plan skipped"
elif [ -x "$checker" ]; then
    args=()
    for set in "${var_sets[@]}"; do args+=(--var "$set"); done
    # The first run builds the checker's virtualenv (about a minute); a run takes seconds.
    # pip's notes about absent local package indexes are noise here.
    if ! { timeout 900 "$checker" infra "${args[@]}" 2>&1; } | grep -v "^WARNING: Location "; then
        echo "terraform-check: findings above (or it did not finish within 15 minutes)" >&2
        status=1
    fi
else
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    cp -r infra "$tmp/infra"
    rm -rf "$tmp/infra/.terraform" "$tmp/infra/.terraform.lock.hcl"
    export TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
    if timeout 120 terraform -chdir="$tmp/infra" init -backend=false -input=false -no-color \
            >"$tmp/init.log" 2>&1; then
        echo "no $checker: the real provider was downloaded; terraform validate"
        if ! timeout 300 terraform -chdir="$tmp/infra" validate -no-color; then
            status=1
        fi
        echo "terraform plan skipped: its data sources (caller identity, availability zones)" \
            "call AWS, so it needs credentials; with them, run terraform -chdir=infra plan" \
            "with each of these -var sets:"
        printf '    %s\n' "${var_sets[@]}"
    else
        echo "terraform validate and plan skipped: no $checker, and terraform init cannot" \
            "download the AWS provider here ($(grep -m1 -iE 'error|could not' "$tmp/init.log" || echo 'timed out'))"
    fi
fi

exit "$status"
