output "stack_name" {
  description = "CloudFormation stack of the web ACL, its association with the ALB and its logging (aws cloudformation describe-stacks: output WebACLArn)."
  value       = try(aws_cloudformation_stack.this.name, null)
}

output "log_group_name" {
  description = "Log group of every request WAF saw."
  value       = try(aws_cloudwatch_log_group.this.name, null)
}
