# ECS Fargate cluster, task definition and service for demo-app.
#
# Task size, port, health check, log group, stop timeout and the deployment
# settings (desired count, 200 % / 100 %, circuit breaker with rollback) come
# from the catalogue (var.catalog). The image is pinned to a git SHA tag or a
# digest in an immutable ECR repository; `latest` is rejected by validation.

data "aws_region" "current" {}

locals {
  task       = var.catalog.task
  service    = var.catalog.service
  deployment = var.catalog.service.deployment
  health     = var.catalog.health_check

  # A digest pins bytes; a SHA tag in an immutable repository pins them too.
  image = startswith(var.image_tag, "sha256:") ? "${var.repository_url}@${var.image_tag}" : "${var.repository_url}:${var.image_tag}"

  container_name = "app"
}

# ------------------------------------------------------------------- cluster

resource "aws_ecs_cluster" "this" {
  name = "${var.name}-cluster"

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  # ECS Exec sessions are encrypted with the environment's key and every
  # session is logged (audit trail of commands run inside tasks).
  configuration {
    execute_command_configuration {
      kms_key_id = var.kms_key_arn
      logging    = "OVERRIDE"

      log_configuration {
        cloud_watch_encryption_enabled = true
        cloud_watch_log_group_name     = var.exec_log_group_name
      }
    }
  }
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    base              = 1
    weight            = 1
  }
}

# ----------------------------------------------------------- security groups

resource "aws_security_group" "tasks" {
  name        = "${var.name}-tasks"
  description = "demo-app tasks: app port from the ALB only"
  vpc_id      = var.vpc_id

  tags = { Name = "${var.name}-tasks" }
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "App port from the load balancer only"
  ip_protocol                  = "tcp"
  from_port                    = local.service.container_port
  to_port                      = local.service.container_port
  referenced_security_group_id = var.alb_security_group_id
}

# Tasks only need HTTPS out: ECR, CloudWatch Logs, SSM (secrets, ECS Exec).
resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to AWS APIs (ECR, Logs, SSM) through NAT"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

# The ALB may only talk to the tasks, on the app port.
resource "aws_vpc_security_group_egress_rule" "alb_to_tasks" {
  security_group_id            = var.alb_security_group_id
  description                  = "Forward requests and health checks to the tasks"
  ip_protocol                  = "tcp"
  from_port                    = local.service.container_port
  to_port                      = local.service.container_port
  referenced_security_group_id = aws_security_group.tasks.id
}

# ------------------------------------------------------------------- secrets

# Fault injection is off in AWS unless var.faults_enabled; when it is on, the
# fault endpoints require this token, generated here, stored encrypted in SSM
# and injected by ECS as a secret (never in the task definition's plain env).
resource "random_password" "fault_token" {
  count = var.faults_enabled ? 1 : 0

  length  = 40
  special = false
}

resource "aws_ssm_parameter" "fault_token" {
  count = var.faults_enabled ? 1 : 0

  name        = "${var.parameter_path}/fault-token"
  description = "Token required by demo-app's fault endpoints (FAULT_TOKEN)"
  type        = "SecureString"
  key_id      = var.kms_key_arn
  value       = random_password.fault_token[0].result
}

# ------------------------------------------------------------ task + service

resource "aws_ecs_task_definition" "app" {
  family                   = "${var.name}-task"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(local.task.cpu_units)
  memory                   = tostring(local.task.memory_mib)
  execution_role_arn       = var.execution_role_arn
  task_role_arn            = var.task_role_arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([
    {
      name      = local.container_name
      image     = local.image
      essential = true
      # Matches the image's USER; never root.
      user = "10001:10001"
      # ECS Exec's agent must write inside the container, so the root file
      # system stays writable (see the checkov skip on this resource).
      readonlyRootFilesystem = false
      # An init process reaps ECS Exec sessions' children.
      linuxParameters = { initProcessEnabled = true }
      stopTimeout     = local.task.stop_timeout_seconds

      portMappings = [{
        containerPort = local.service.container_port
        protocol      = "tcp"
      }]

      environment = [
        { name = "PORT", value = tostring(local.service.container_port) },
        { name = "ENVIRONMENT", value = local.service.environment },
        { name = "LOG_LEVEL", value = var.log_level },
        { name = "FAULTS", value = var.faults_enabled ? "enabled" : "disabled" },
        { name = "APP_VERSION", value = var.image_tag },
        { name = "GIT_SHA", value = var.image_tag },
      ]

      secrets = [for arn in aws_ssm_parameter.fault_token[*].arn : { name = "FAULT_TOKEN", valueFrom = arn }]

      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = var.log_group_name
          awslogs-region        = data.aws_region.current.region
          awslogs-stream-prefix = "app"
        }
      }

      # Same probe as the ALB's, run inside the container by the binary
      # itself (the image has no shell or curl).
      healthCheck = {
        command     = ["CMD", "/demo-app", "healthcheck"]
        interval    = local.health.interval_seconds
        timeout     = local.health.timeout_seconds
        retries     = local.health.unhealthy_threshold
        startPeriod = 10
      }
    }
  ])

  lifecycle {
    precondition {
      condition     = !endswith(local.image, ":latest")
      error_message = "The task definition must pin an image by git SHA tag or digest, never :latest."
    }
  }
}

resource "aws_ecs_service" "app" {
  name                               = "${var.name}-service"
  cluster                            = aws_ecs_cluster.this.id
  task_definition                    = aws_ecs_task_definition.app.arn
  desired_count                      = local.service.desired_count
  deployment_maximum_percent         = local.deployment.maximum_percent
  deployment_minimum_healthy_percent = local.deployment.minimum_healthy_percent
  health_check_grace_period_seconds  = var.health_check_grace_period_seconds
  enable_execute_command             = true
  enable_ecs_managed_tags            = true
  propagate_tags                     = "SERVICE"
  platform_version                   = "LATEST"

  capacity_provider_strategy {
    capacity_provider = "FARGATE"
    base              = 1
    weight            = 1
  }

  capacity_provider_strategy {
    capacity_provider = "FARGATE_SPOT"
    weight            = var.fargate_spot_weight
  }

  deployment_circuit_breaker {
    enable   = local.deployment.circuit_breaker.enable
    rollback = local.deployment.circuit_breaker.rollback
  }

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = var.target_group_arn
    container_name   = local.container_name
    container_port   = local.service.container_port
  }

  # The deploy workflow registers new task definition revisions (new image)
  # and autoscaling owns the running count: Terraform must not roll either
  # back on its next apply.
  lifecycle {
    ignore_changes = [task_definition, desired_count]
  }

  depends_on = [aws_ecs_cluster_capacity_providers.this]
}

# --------------------------------------------------------------- autoscaling

resource "aws_appautoscaling_target" "service" {
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.app.name}"
  min_capacity       = local.service.desired_count
  max_capacity       = var.max_count
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "${var.name}-cpu-target"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.service.service_namespace
  scalable_dimension = aws_appautoscaling_target.service.scalable_dimension
  resource_id        = aws_appautoscaling_target.service.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.cpu_target_percent
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

resource "aws_appautoscaling_policy" "memory" {
  name               = "${var.name}-memory-target"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.service.service_namespace
  scalable_dimension = aws_appautoscaling_target.service.scalable_dimension
  resource_id        = aws_appautoscaling_target.service.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.memory_target_percent
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageMemoryUtilization"
    }
  }
}
