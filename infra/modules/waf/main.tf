# The shop's abuse limits at its door: a WAFv2 web ACL on the load balancer. Per client
# address, a cap on POST /orders (a script cannot drain the stock or flood the queue while the
# database is out) and a looser cap on everything; AWS's managed rule groups for addresses with
# a bad reputation, the common web exploits and known bad inputs (Log4j among them); every
# request logged, the Authorization header redacted.
#
# The web ACL, its optional IP set, its association with the ALB and its logging are one
# CloudFormation stack (AWS::WAFv2::*), not aws_wafv2_web_acl: the offline check every change
# of infra/ must pass (../shared/tools/terraform-check) cannot load that resource's schema (its
# mock provider serves rule.statement as a dynamic attribute inside a set, which Terraform
# refuses), and a failed schema load stops every plan. The rules below are WAF's own JSON, the
# same that aws_wafv2_web_acl's rule_json takes, so moving back is a small change.

locals {
  exempt = length(var.rate_limit_exempt_cidrs) > 0
  # Requests from the exempt addresses (e.g. the lab's load generator) are not counted.
  not_exempt = local.exempt ? [{ NotStatement = { Statement = { IPSetReferenceStatement = { Arn = { "Fn::GetAtt" = ["RateLimitExempt", "Arn"] } } } } }] : []
  # POST to /orders...: the requests that take stock or queue an order.
  order_posts = [
    { ByteMatchStatement = { SearchString = "POST", FieldToMatch = { Method = {} }, PositionalConstraint = "EXACTLY", TextTransformations = [{ Priority = 0, Type = "NONE" }] } },
    { ByteMatchStatement = { SearchString = "/orders", FieldToMatch = { UriPath = {} }, PositionalConstraint = "STARTS_WITH", TextTransformations = [{ Priority = 0, Type = "NONE" }] } },
  ]

  # Rate rules first (cheap, and a flood never reaches the rest), then the managed groups.
  rate_rules = {
    order-posts-per-client = {
      priority = 10
      limit    = var.order_rate_limit
      scope    = { AndStatement = { Statements = concat(local.order_posts, local.not_exempt) } }
    }
    requests-per-client = {
      priority = 20
      limit    = var.request_rate_limit
      scope    = local.exempt ? local.not_exempt[0] : null
    }
  }
  managed_rule_groups = {
    AWSManagedRulesAmazonIpReputationList = 30
    AWSManagedRulesCommonRuleSet          = 40
    AWSManagedRulesKnownBadInputsRuleSet  = 50
  }

  rules = concat(
    [for name, rule in local.rate_rules : {
      Name     = name
      Priority = rule.priority
      Action   = { Block = {} }
      Statement = {
        RateBasedStatement = merge(
          { Limit = rule.limit, EvaluationWindowSec = var.rate_window_seconds, AggregateKeyType = "IP" },
          rule.scope == null ? {} : { ScopeDownStatement = rule.scope },
        )
      }
      VisibilityConfig = { SampledRequestsEnabled = true, CloudWatchMetricsEnabled = true, MetricName = "${var.name}-${name}" }
    }],
    [for group, priority in local.managed_rule_groups : {
      Name             = group
      Priority         = priority
      OverrideAction   = { None = {} }
      Statement        = { ManagedRuleGroupStatement = { VendorName = "AWS", Name = group } }
      VisibilityConfig = { SampledRequestsEnabled = true, CloudWatchMetricsEnabled = true, MetricName = "${var.name}-${group}" }
    }],
  )

  template = {
    AWSTemplateFormatVersion = "2010-09-09"
    Description              = "Chaos Shop: the WAF web ACL of the load balancer"
    Resources = merge(
      {
        WebACL = {
          Type = "AWS::WAFv2::WebACL"
          Properties = {
            Name             = var.name
            Description      = "Chaos Shop: rate limits per client and AWS managed rule groups"
            Scope            = "REGIONAL"
            DefaultAction    = { Allow = {} }
            Rules            = local.rules
            VisibilityConfig = { SampledRequestsEnabled = true, CloudWatchMetricsEnabled = true, MetricName = var.name }
          }
        }
        Association = {
          Type       = "AWS::WAFv2::WebACLAssociation"
          Properties = { ResourceArn = var.resource_arn, WebACLArn = { "Fn::GetAtt" = ["WebACL", "Arn"] } }
        }
        Logging = {
          Type = "AWS::WAFv2::LoggingConfiguration"
          Properties = {
            ResourceArn           = { "Fn::GetAtt" = ["WebACL", "Arn"] }
            LogDestinationConfigs = [aws_cloudwatch_log_group.this.arn]
            # Bearer tokens stay out of the logs.
            RedactedFields = [{ SingleHeader = { Name = "authorization" } }]
          }
        }
      },
      local.exempt ? {
        RateLimitExempt = {
          Type = "AWS::WAFv2::IPSet"
          Properties = {
            Name             = "${var.name}-rate-limit-exempt"
            Description      = "Clients the rate rules do not count (the lab's load generator)"
            Scope            = "REGIONAL"
            IPAddressVersion = "IPV4"
            Addresses        = var.rate_limit_exempt_cidrs
          }
        }
      } : {},
    )
    Outputs = { WebACLArn = { Value = { "Fn::GetAtt" = ["WebACL", "Arn"] } } }
  }
}

# WAF writes to a log group whose name starts with aws-waf-logs-.
resource "aws_cloudwatch_log_group" "this" {
  name              = "aws-waf-logs-${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn

  tags = var.tags
}

resource "aws_cloudformation_stack" "this" {
  #checkov:skip=CKV_AWS_124:a stack of four WAF resources changed only by terraform apply, whose own output says what changed; no one reads stack events from SNS
  name          = "${var.name}-waf"
  template_body = jsonencode(local.template)
  on_failure    = "DELETE"

  tags = var.tags
}
