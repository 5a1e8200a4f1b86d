output "dns_name" {
  value = aws_lb.this.dns_name
}

output "url" {
  value = "${local.https ? "https" : "http"}://${aws_lb.this.dns_name}"
}

output "arn_suffix" {
  description = "LoadBalancer dimension of the ALB's CloudWatch metrics."
  value       = aws_lb.this.arn_suffix
}

output "target_group_arn" {
  description = "Available only once a listener forwards to it: ECS rejects a service whose target group has no load balancer."
  value       = aws_lb_target_group.app.arn
  depends_on  = [aws_lb_listener.http, aws_lb_listener.https]
}

output "target_group_arn_suffix" {
  description = "TargetGroup dimension of the target group's CloudWatch metrics."
  value       = aws_lb_target_group.app.arn_suffix
}

output "security_group_id" {
  value = aws_security_group.alb.id
}

output "arn" {
  value = aws_lb.this.arn
}
