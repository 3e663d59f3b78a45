locals {
  endpoints = var.aws_api_access == "endpoints"
}

# The only path through the shop: internet -> ALB -> tasks -> RDS Proxy -> Aurora.
# Each hop admits exactly the hop before it, by security group, on one port. The fragile
# deployment (enable_proxy = false) adds the one shortcut it needs: tasks -> Aurora.

resource "aws_security_group" "alb" {
  #checkov:skip=CKV2_AWS_5:attached to the load balancer in another module; the root module wires the output through
  name        = "${var.name}-alb"
  description = "Load balancer: HTTP(S) from the internet"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-alb" })
}

resource "aws_security_group" "tasks" {
  #checkov:skip=CKV2_AWS_5:attached to the ECS services in another module; the root module wires the output through
  name        = "${var.name}-tasks"
  description = "ECS tasks: the services and the worker"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-tasks" })
}

resource "aws_security_group" "proxy" {
  #checkov:skip=CKV2_AWS_5:attached to RDS Proxy and its reader endpoint in another module; the root module wires the output through
  name        = "${var.name}-proxy"
  description = "RDS Proxy: PostgreSQL from the tasks"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-proxy" })
}

resource "aws_security_group" "database" {
  #checkov:skip=CKV2_AWS_5:attached to the Aurora cluster in another module; the root module wires the output through
  name        = "${var.name}-database"
  description = "Aurora: PostgreSQL from the proxy (and the tasks when there is no proxy)"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-database" })
}

# internet -> ALB

resource "aws_vpc_security_group_ingress_rule" "alb_http" {
  #checkov:skip=CKV_AWS_260:the load balancer is the shop's public entry; port 80 answers or redirects to HTTPS
  security_group_id = aws_security_group.alb.id
  description       = "HTTP from the internet (redirected to HTTPS when a certificate is set)"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  count = var.https ? 1 : 0

  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from the internet"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "alb_to_tasks" {
  security_group_id            = aws_security_group.alb.id
  description                  = "To the services' containers"
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
  referenced_security_group_id = aws_security_group.tasks.id
}

# ALB -> tasks

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "From the load balancer only"
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_proxy" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "PostgreSQL to RDS Proxy"
  ip_protocol                  = "tcp"
  from_port                    = var.database_port
  to_port                      = var.database_port
  referenced_security_group_id = aws_security_group.proxy.id
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_database" {
  count = var.enable_proxy ? 0 : 1

  security_group_id            = aws_security_group.tasks.id
  description                  = "PostgreSQL straight to Aurora (fragile deployment, no proxy)"
  ip_protocol                  = "tcp"
  from_port                    = var.database_port
  to_port                      = var.database_port
  referenced_security_group_id = aws_security_group.database.id
}

# tasks -> the AWS APIs: by default only through the VPC's endpoints (the interface endpoints'
# group, and the S3 and DynamoDB gateway endpoints' prefix lists); any HTTPS host only when a
# NAT gateway was asked for (aws_api_access = "nat").

resource "aws_vpc_security_group_egress_rule" "tasks_to_endpoints" {
  count = local.endpoints ? 1 : 0

  security_group_id            = aws_security_group.tasks.id
  description                  = "HTTPS to the AWS APIs' interface endpoints"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = var.endpoints_security_group_id
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_from_tasks" {
  count = local.endpoints ? 1 : 0

  security_group_id            = var.endpoints_security_group_id
  description                  = "HTTPS from the tasks"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_gateways" {
  for_each = local.endpoints ? toset(["s3", "dynamodb"]) : toset([])

  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to ${each.key} through its gateway endpoint"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = var.gateway_prefix_list_ids[each.key]
}

resource "aws_vpc_security_group_egress_rule" "tasks_https_anywhere" {
  #checkov:skip=CKV_AWS_382:only with aws_api_access = "nat", asked for explicitly; port 443 only (the default deployment goes through the VPC endpoints and has no such rule)
  count = local.endpoints ? 0 : 1

  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to any host through the NAT gateway (aws_api_access = nat)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

# tasks -> proxy

resource "aws_vpc_security_group_ingress_rule" "proxy_from_tasks" {
  security_group_id            = aws_security_group.proxy.id
  description                  = "PostgreSQL from the tasks"
  ip_protocol                  = "tcp"
  from_port                    = var.database_port
  to_port                      = var.database_port
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_vpc_security_group_egress_rule" "proxy_to_database" {
  security_group_id            = aws_security_group.proxy.id
  description                  = "PostgreSQL to Aurora"
  ip_protocol                  = "tcp"
  from_port                    = var.database_port
  to_port                      = var.database_port
  referenced_security_group_id = aws_security_group.database.id
}

# proxy -> Aurora (and tasks -> Aurora without a proxy)

resource "aws_vpc_security_group_ingress_rule" "database_from_proxy" {
  security_group_id            = aws_security_group.database.id
  description                  = "PostgreSQL from RDS Proxy"
  ip_protocol                  = "tcp"
  from_port                    = var.database_port
  to_port                      = var.database_port
  referenced_security_group_id = aws_security_group.proxy.id
}

resource "aws_vpc_security_group_ingress_rule" "database_from_tasks" {
  count = var.enable_proxy ? 0 : 1

  security_group_id            = aws_security_group.database.id
  description                  = "PostgreSQL from the tasks (fragile deployment, no proxy)"
  ip_protocol                  = "tcp"
  from_port                    = var.database_port
  to_port                      = var.database_port
  referenced_security_group_id = aws_security_group.tasks.id
}
