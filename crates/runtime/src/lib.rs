//! The architecture on one machine: what ECS, the ALB and CloudWatch do,
//! emulated with real processes, real HTTP and a real embedded database.
//!
//! * [`task`]: tasks are `demo-app` processes; their output is the log pipeline's input.
//! * [`lb`]: the load balancer, its target health checks and ALB metrics.
//! * [`datapath`]: the load balancer's own thread and runtime, apart from the log pipeline.
//! * [`service`]: the ECS service scheduler: replacement, rolling deployments, circuit breaker.
//! * [`collector`]: metrics every tick (ECS, ALB, per-route, ErrorCount) and alarm evaluation.
//! * [`console`]: the browser console on the control port (pages, live state, actions).
//! * [`control`]: the local control API the CLI talks to while `up` runs (token-protected).
//! * [`builds`]: `demo-app` built at a git revision, for deployments that name one.
//! * [`prometheus`]: service discovery of the tasks, `up`'s own `/metrics`, the catalogue as alerting rules.
//! * [`alerts`]: Alertmanager and SNS alerts in, through the same episodes as local alarms.
//! * [`supervision`]: one `up` per state directory, tasks that die with it, orphans stopped.
//!
//! Everything runs on the time scale of [`RuntimeConfig`]: periods and intervals
//! from the catalogue are divided by it, the catalogue itself never changes.

pub mod alerts;
pub mod builds;
pub mod collector;
pub mod config;
pub mod console;
pub mod control;
pub mod control_auth;
pub mod datapath;
pub mod lb;
pub mod procfs;
pub mod prometheus;
pub mod proxy;
pub mod runtime;
pub mod service;
pub mod supervision;
pub mod task;
pub mod upstream;

pub use config::RuntimeConfig;
pub use runtime::{Runtime, RuntimeError};

pub use demo_model::now_ms;
