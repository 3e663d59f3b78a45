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

output "private_subnet_ids" {
  description = "Subnets of the tasks, the proxy and the database."
  value       = try(aws_subnet.private[*].id, [])
}
