//! The job file's settings as JSON, kept with the job's row so that `backfill serve` can show
//! them on a host that has no job file.

use super::Job;

impl Job {
    /// What the job file says, as JSON kept with the job's row for `backfill serve` (whose
    /// host may not have the file): the rows it changes and how, and its batch settings.
    pub fn settings(&self) -> String {
        let set: serde_json::Map<String, serde_json::Value> = self
            .set
            .iter()
            .map(|a| (a.column.clone(), a.expr.clone().into()))
            .collect();
        serde_json::json!({
            "table": self.table.to_string(),
            "key": self.key,
            "where": self.filter,
            "set": set,
            "batch": {
                "size": self.batch.size,
                "min": self.batch.min,
                "max": self.batch.max,
                "workers": self.batch.workers,
                "pause_ratio": self.batch.pause_ratio,
            },
            "throttle": self.throttle.enabled,
            "guard": self.guard.enabled,
        })
        .to_string()
    }
}
