output "agent_space_id" {
  value = awscc_devopsagent_agent_space.this.agent_space_id
}

output "agent_space_arn" {
  value = awscc_devopsagent_agent_space.this.arn
}
