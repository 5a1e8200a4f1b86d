# Internet-facing ALB with IP targets (Fargate). The health check is read from
# the observability catalogue, so the local runtime and AWS probe the same way.
#
# Listeners: HTTP always *forwards* to the targets. HTTPS exists only when a
# certificate ARN is given, and only then does HTTP redirect to it. Redirecting
# to an HTTPS listener that does not exist was one of the original's bugs.

locals {
  health_check = var.catalog.health_check
  https        = var.certificate_arn != null
}

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "Internet-facing load balancer for ${var.name}"
  vpc_id      = var.vpc_id

  tags = { Name = "${var.name}-alb" }
}

resource "aws_vpc_security_group_ingress_rule" "http" {
  #checkov:skip=CKV_AWS_260:The service is a public demo endpoint: port 80 from anywhere is the requirement (HTTPS is added when a certificate is given).
  security_group_id = aws_security_group.alb.id
  description       = "HTTP from the internet"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "https" {
  count = local.https ? 1 : 0

  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from the internet"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_91:Access logs need a dedicated S3 bucket (SSE-S3 only, its own lifecycle); the investigator reads target metrics and app logs instead. Enable for production.
  #checkov:skip=CKV_AWS_150:Deletion protection would block `terraform destroy`, the documented tear-down of this dev environment; set var.deletion_protection = true in production.
  #checkov:skip=CKV2_AWS_28:A WAF web ACL (about 6 USD/month plus rules) is out of scope for a demo; the service has no authenticated state to protect.
  name                       = "${var.name}-alb"
  load_balancer_type         = "application"
  internal                   = false
  security_groups            = [aws_security_group.alb.id]
  subnets                    = var.public_subnet_ids
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  idle_timeout               = 60

  tags = { Name = "${var.name}-alb" }
}

resource "aws_lb_target_group" "app" {
  #checkov:skip=CKV_AWS_378:TLS terminates at the ALB; targets are in private subnets reachable only from the ALB security group.
  name                 = "${var.name}-tg"
  port                 = var.catalog.service.container_port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = var.deregistration_delay_seconds

  health_check {
    enabled             = true
    protocol            = "HTTP"
    port                = "traffic-port"
    path                = local.health_check.path
    interval            = local.health_check.interval_seconds
    timeout             = local.health_check.timeout_seconds
    healthy_threshold   = local.health_check.healthy_threshold
    unhealthy_threshold = local.health_check.unhealthy_threshold
    matcher             = local.health_check.matcher
  }

  tags = { Name = "${var.name}-tg" }
}

resource "aws_lb_listener" "http" {
  #checkov:skip=CKV_AWS_2:Plain HTTP is required when no certificate is given; with a certificate this listener redirects to HTTPS.
  #checkov:skip=CKV_AWS_103:TLS policy applies to the HTTPS listener only, which sets a TLS 1.3/1.2 policy.
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type             = local.https ? "redirect" : "forward"
    target_group_arn = local.https ? null : aws_lb_target_group.app.arn

    dynamic "redirect" {
      for_each = local.https ? [1] : []
      content {
        port        = "443"
        protocol    = "HTTPS"
        status_code = "HTTP_301"
      }
    }
  }
}

resource "aws_lb_listener" "https" {
  count = local.https ? 1 : 0

  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.app.arn
  }
}

# /metrics is for the collector inside the VPC, not for the internet: the
# listener that forwards to the targets answers 404 for it.
resource "aws_lb_listener_rule" "no_public_metrics" {
  listener_arn = local.https ? aws_lb_listener.https[0].arn : aws_lb_listener.http.arn
  priority     = 1

  action {
    type = "fixed-response"
    fixed_response {
      content_type = "text/plain"
      message_body = "not found"
      status_code  = "404"
    }
  }

  condition {
    path_pattern {
      values = ["/metrics", "/metrics/*"]
    }
  }
}
