output "vpc_id" {
  description = "ID of the VPC."
  value       = try(aws_vpc.this.id, null)
}

output "vpc_cidr" {
  description = "CIDR block of the VPC."
  value       = try(aws_vpc.this.cidr_block, null)
}

output "public_subnet_ids" {
  description = "Subnets of the load balancer."
  value       = try(aws_subnet.public[*].id, [])
}

output "public_subnet_cidrs" {
  description = "Address ranges of the load balancer's subnets: the addresses its nodes reach the tasks from."
  value       = try(aws_subnet.public[*].cidr_block, [])
}

output "endpoints_security_group_id" {
  description = "Security group of the interface endpoints (null with NAT)."
  value       = try(aws_security_group.endpoints[0].id, null)
}

output "gateway_prefix_list_ids" {
  description = "Prefix list per gateway endpoint (s3, dynamodb): the addresses the tasks reach them at."
  value       = { for name, endpoint in aws_vpc_endpoint.gateway : name => endpoint.prefix_list_id }
}

output "private_subnet_ids" {
  description = "Subnets of the tasks, the proxy and the database."
  value       = try(aws_subnet.private[*].id, [])
}
