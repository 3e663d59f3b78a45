locals {
  https = var.certificate_arn != null
  # The listener that carries the path rules: HTTPS when there is a certificate (HTTP then only
  # redirects), HTTP otherwise (a lab that said allow_plain_http_for_lab).
  listener_arn = local.https ? aws_lb_listener.https[0].arn : aws_lb_listener.http.arn
}

resource "aws_lb" "this" {
  #checkov:skip=CKV2_AWS_28:the WAF web ACL is associated by modules/waf (root module.waf, aws_wafv2_web_acl_association), which checkov does not join to this module's resource
  #checkov:skip=CKV2_AWS_20:port 80 redirects to HTTPS whenever there is a certificate (a dynamic block checkov cannot follow); without one the root module's validation demands allow_plain_http_for_lab
  name                       = var.name
  load_balancer_type         = "application"
  internal                   = false
  security_groups            = [var.security_group_id]
  subnets                    = var.subnet_ids
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  idle_timeout               = 30

  # Every request, with the client's address, to the log bucket (an S3 bucket of its own:
  # modules/log_bucket, encrypted, versioned, expiring).
  access_logs {
    bucket  = var.access_logs_bucket
    prefix  = var.access_logs_prefix
    enabled = true
  }

  tags = var.tags
}

resource "aws_lb_target_group" "this" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer; ALB to task traffic stays inside the VPC's private subnets
  for_each = var.routes

  name                 = "${var.name}-${each.key}"
  port                 = var.container_port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 15

  # The cheap liveness route: it answers 200 at once, database or not. A deep check here
  # would take every task out of the load balancer during a database outage, which is the
  # application outage degradation exists to avoid.
  health_check {
    path                = var.health_check_path
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = merge(var.tags, { Service = each.key })
}

resource "aws_lb_listener" "http" {
  #checkov:skip=CKV_AWS_2:port 80 redirects to HTTPS when certificate_arn is set; plain HTTP is served only by a lab that set allow_plain_http_for_lab (validated in the root module)
  #checkov:skip=CKV_AWS_103:see CKV_AWS_2: the HTTPS listener uses a TLS 1.2+ policy
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  dynamic "default_action" {
    for_each = local.https ? [1] : []
    content {
      type = "redirect"
      redirect {
        port        = "443"
        protocol    = "HTTPS"
        status_code = "HTTP_301"
      }
    }
  }

  dynamic "default_action" {
    for_each = local.https ? [] : [1]
    content {
      type = "fixed-response"
      fixed_response {
        content_type = "application/json"
        message_body = "{\"detail\":\"Not Found\"}"
        status_code  = "404"
      }
    }
  }

  tags = var.tags
}

resource "aws_lb_listener" "https" {
  count = local.https ? 1 : 0

  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type = "fixed-response"
    fixed_response {
      content_type = "application/json"
      message_body = "{\"detail\":\"Not Found\"}"
      status_code  = "404"
    }
  }

  tags = var.tags
}

# One rule a service: /products* -> catalog, /orders* -> orders.
resource "aws_lb_listener_rule" "this" {
  for_each = var.routes

  listener_arn = local.listener_arn
  priority     = each.value.priority

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this[each.key].arn
  }

  condition {
    path_pattern {
      values = each.value.path_patterns
    }
  }

  tags = var.tags
}

# Optional authentication of a route at the load balancer (POST /orders): before the request is
# forwarded, the ALB validates a bearer token (jwt: signature by the issuer's JWKS, issuer,
# expiry, and the scope if one is required), or signs the user in with an OIDC provider (oidc:
# a browser session). A request that fails gets 401 and never reaches a task. HTTPS only.
resource "aws_lb_listener_rule" "authenticated" {
  count = var.authentication == null ? 0 : 1

  listener_arn = aws_lb_listener.https[0].arn
  priority     = var.authentication.priority

  action {
    type  = var.authentication.mode == "jwt" ? "jwt-validation" : "authenticate-oidc"
    order = 1

    dynamic "jwt_validation" {
      for_each = var.authentication.mode == "jwt" ? [var.authentication] : []
      content {
        issuer        = jwt_validation.value.issuer
        jwks_endpoint = jwt_validation.value.jwks_endpoint

        dynamic "additional_claim" {
          for_each = jwt_validation.value.required_scope == null ? [] : [jwt_validation.value.required_scope]
          content {
            name   = "scope"
            format = "space-separated-values"
            values = [additional_claim.value]
          }
        }
      }
    }

    dynamic "authenticate_oidc" {
      for_each = var.authentication.mode == "oidc" ? [var.authentication] : []
      content {
        issuer                     = authenticate_oidc.value.issuer
        authorization_endpoint     = authenticate_oidc.value.authorization_endpoint
        token_endpoint             = authenticate_oidc.value.token_endpoint
        user_info_endpoint         = authenticate_oidc.value.user_info_endpoint
        client_id                  = authenticate_oidc.value.client_id
        client_secret              = var.authentication_client_secret
        on_unauthenticated_request = "deny"
      }
    }
  }

  action {
    type             = "forward"
    order            = 2
    target_group_arn = aws_lb_target_group.this[var.authentication.target].arn
  }

  condition {
    path_pattern {
      values = var.authentication.path_patterns
    }
  }

  condition {
    http_request_method {
      values = var.authentication.methods
    }
  }

  tags = var.tags
}
