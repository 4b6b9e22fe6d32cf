//! `admissionregistration.k8s.io/v1` ValidatingWebhookConfiguration: the webhooks asked to
//! accept or refuse a request after mutation. Validation, defaults and the table are the
//! rules both webhook kinds share ([`super`]).

use super::{
    cells, columns, default_configuration, first_generation, sample, validate_configuration,
};
use crate::apiserver::registry::prelude::*;
use k8s_openapi::api::admissionregistration::v1 as api;

/// The `validatingwebhookconfigurations` resource.
pub static RESOURCE: Resource = Resource {
    group: "admissionregistration.k8s.io",
    version: "v1",
    kind: "ValidatingWebhookConfiguration",
    plural: "validatingwebhookconfigurations",
    singular: "validatingwebhookconfiguration",
    namespaced: false,
    short_names: &[],
    categories: &["api-extensions"],
    subresources: &[],
    storage_prefix: "validatingwebhookconfigurations",
    field_labels: &[],
    strategy: &ValidatingWebhookConfigurations,
};

/// The `ValidatingWebhookConfiguration` strategy.
pub struct ValidatingWebhookConfigurations;

impl Strategy for ValidatingWebhookConfigurations {
    typed_as!(
        "v1.ValidatingWebhookConfiguration",
        api::ValidatingWebhookConfiguration
    );

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        validate_configuration(e, object, old, false);
    }

    /// `SetDefaults_ValidatingWebhook` and the defaults of its rules and service.
    fn default(&self, object: &mut Value) {
        default_configuration(object, false);
    }

    fn prepare_named(&self, object: &mut Value) {
        first_generation(object);
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        columns()
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        cells(object, now)
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: sample("check.policy.example.com"),
            invalid: sample("check"),
            invalid_field: "webhooks[0].name",
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn served_as_kube_apiserver_serves_it() {
        let found = crate::apiserver::registry::Registry::new()
            .find_kind(
                "admissionregistration.k8s.io/v1",
                "ValidatingWebhookConfiguration",
            )
            .unwrap();
        assert_eq!(found.plural, "validatingwebhookconfigurations");
        assert!(!found.namespaced);
        assert_eq!(
            found.key(None, "policy"),
            "/registry/validatingwebhookconfigurations/policy"
        );
        assert_eq!(found.categories, ["api-extensions"]);
    }

    #[test]
    fn a_validating_webhook_has_no_reinvocation_policy() {
        let mut object = sample("check.policy.example.com");
        ValidatingWebhookConfigurations.default(&mut object);
        assert!(object["webhooks"][0].get("reinvocationPolicy").is_none());
        // The field is the mutating kind's; decoding drops it, so validation ignores it.
        object["webhooks"][0]["reinvocationPolicy"] = json!("Sometimes");
        assert!(RESOURCE.validate(&object, None).is_empty());
    }

    #[test]
    fn creates_start_at_generation_one() {
        let mut object = sample("check.policy.example.com");
        ValidatingWebhookConfigurations.prepare_named(&mut object);
        assert_eq!(object["metadata"]["generation"], 1);
    }
}
