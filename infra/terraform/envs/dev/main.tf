# The dev environment: the architecture of ARCHITECTURE-SEED.md on AWS.
#
# Everything the local runtime also knows (alarms, metric filter, health
# check, task size, log group and retention, deployment settings) is read from
# the one catalogue, config/observability.yaml, and handed to the modules as
# `catalog`. Nothing here restates those values.

locals {
  catalog = yamldecode(file("${path.module}/../../../../config/observability.yaml"))

  name         = "${local.catalog.service.name}-${local.catalog.service.environment}"
  cluster_name = "${local.name}-cluster"
  service_name = "${local.name}-service"

  # SSM namespace of this environment.
  parameter_root = "/${local.catalog.service.name}/${local.catalog.service.environment}"
}

data "aws_caller_identity" "current" {}

module "network" {
  source = "../../modules/network"

  name                 = local.name
  account_id           = data.aws_caller_identity.current.account_id
  vpc_cidr             = var.vpc_cidr
  availability_zones   = var.availability_zones
  public_subnet_cidrs  = var.public_subnet_cidrs
  private_subnet_cidrs = var.private_subnet_cidrs
  single_nat_gateway   = var.single_nat_gateway
  flow_log_group_arn   = module.observability.flow_log_group_arn
}

module "registry" {
  source = "../../modules/registry"

  name = local.name
}

module "load_balancer" {
  source = "../../modules/load_balancer"

  name              = local.name
  catalog           = local.catalog
  vpc_id            = module.network.vpc_id
  public_subnet_ids = module.network.public_subnet_ids
  certificate_arn   = var.certificate_arn
}

module "observability" {
  source = "../../modules/observability"

  name                     = local.name
  catalog                  = local.catalog
  cluster_name             = local.cluster_name
  service_name             = local.service_name
  load_balancer_arn_suffix = module.load_balancer.arn_suffix
  target_group_arn_suffix  = module.load_balancer.target_group_arn_suffix
  alarm_emails             = var.alarm_emails
}

module "deployment_metadata" {
  source = "../../modules/deployment_metadata"

  name = local.name
  path = "${local.parameter_root}/deployments"
}

module "iam" {
  source = "../../modules/iam"

  name                         = local.name
  cluster_name                 = local.cluster_name
  service_name                 = local.service_name
  ecr_repository_arn           = module.registry.repository_arn
  log_group_name               = module.observability.log_group_name
  log_group_arn                = module.observability.log_group_arn
  exec_log_group_arn           = module.observability.exec_log_group_arn
  kms_key_arn                  = module.observability.kms_key_arn
  alarm_arn_prefix             = module.observability.alarm_arn_prefix
  alarm_queue_arn              = module.observability.alarm_queue_arn
  app_parameter_path           = "${local.parameter_root}/app"
  deployment_parameter_path    = module.deployment_metadata.path
  agent_trusted_principal_arns = coalescelist(var.agent_trusted_principal_arns, ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"])
  github_repository            = var.github_repository
  github_deploy_branch         = var.github_deploy_branch
}

module "ecs_service" {
  source = "../../modules/ecs_service"

  name                  = local.name
  catalog               = local.catalog
  repository_url        = module.registry.repository_url
  image_tag             = var.image_tag
  vpc_id                = module.network.vpc_id
  private_subnet_ids    = module.network.private_subnet_ids
  alb_security_group_id = module.load_balancer.security_group_id
  target_group_arn      = module.load_balancer.target_group_arn
  execution_role_arn    = module.iam.execution_role_arn
  task_role_arn         = module.iam.task_role_arn
  kms_key_arn           = module.observability.kms_key_arn
  log_group_name        = module.observability.log_group_name
  exec_log_group_name   = module.observability.exec_log_group_name
  parameter_path        = "${local.parameter_root}/app"
  faults_enabled        = var.faults_enabled
  max_count             = var.max_count
  fargate_spot_weight   = var.fargate_spot_weight
}

module "investigator" {
  source = "../../modules/investigator"

  name                      = local.name
  catalog                   = local.catalog
  image                     = "${module.registry.repository_url}:${var.image_tag}"
  cluster_name              = local.cluster_name
  cluster_arn               = module.ecs_service.cluster_arn
  service_name              = local.service_name
  vpc_id                    = module.network.vpc_id
  private_subnet_ids        = module.network.private_subnet_ids
  execution_role_arn        = module.iam.execution_role_arn
  kms_key_arn               = module.observability.kms_key_arn
  log_group_name            = module.observability.log_group_name
  log_group_arn             = module.observability.log_group_arn
  alarm_queue_arn           = module.observability.alarm_queue_arn
  alarm_queue_url           = module.observability.alarm_queue_url
  alarm_dlq_arn             = module.observability.alarm_dlq_arn
  alarm_dlq_url             = module.observability.alarm_dlq_url
  deployment_parameter_path = module.deployment_metadata.path
  load_balancer_arn_suffix  = module.load_balancer.arn_suffix
  target_group_arn_suffix   = module.load_balancer.target_group_arn_suffix
  target_group_arn          = module.load_balancer.target_group_arn
  webhook_enabled           = var.devops_agent_webhook_url != null
  webhook_url               = var.devops_agent_webhook_url
}

module "agent_space" {
  source = "../../modules/agent_space"
  count  = var.agent_space_enabled ? 1 : 0

  name           = local.name
  agent_role_arn = module.iam.agent_role_arn
}

# The alarms and IAM policies above use the cluster/service names as plain
# strings (no dependency cycle); this keeps them in step with the module.
check "service_names_match" {
  assert {
    condition     = module.ecs_service.cluster_name == local.cluster_name && module.ecs_service.service_name == local.service_name
    error_message = "The ECS module's cluster/service names differ from the ones the alarms and IAM policies use."
  }
}
