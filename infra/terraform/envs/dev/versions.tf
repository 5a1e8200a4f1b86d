terraform {
  required_version = ">= 1.11.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0, < 7.0"
    }
    # Only used by the optional Agent Space (agent_space_enabled).
    awscc = {
      source  = "hashicorp/awscc"
      version = ">= 1.60, < 2.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6, < 4.0"
    }
  }

  # Remote state in the bucket made by ../../bootstrap, locked with S3's
  # native lock file (no DynamoDB table). Bucket and region are given at init:
  #   terraform init -backend-config="bucket=<state bucket>" -backend-config="region=us-east-1"
  backend "s3" {
    key          = "devops-agent-demo/dev/terraform.tfstate"
    encrypt      = true
    use_lockfile = true
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project     = local.catalog.service.name
      Environment = local.catalog.service.environment
      ManagedBy   = "terraform"
      Repository  = var.github_repository
    }
  }
}

provider "awscc" {
  region = var.region
}
