//! `admissionregistration.k8s.io/v1` MutatingWebhookConfiguration: the webhooks that may
//! change a request's object before it is validated. Validation, defaults and the table are
//! the rules both webhook kinds share ([`super`]); a mutating webhook also has a reinvocation
//! policy.

use super::{
    cells, columns, default_configuration, first_generation, sample, validate_configuration,
};
use crate::apiserver::registry::prelude::*;
use k8s_openapi::api::admissionregistration::v1 as api;

/// The `mutatingwebhookconfigurations` resource.
pub static RESOURCE: Resource = Resource {
    group: "admissionregistration.k8s.io",
    version: "v1",
    kind: "MutatingWebhookConfiguration",
    plural: "mutatingwebhookconfigurations",
    singular: "mutatingwebhookconfiguration",
    namespaced: false,
    short_names: &[],
    categories: &["api-extensions"],
    subresources: &[],
    storage_prefix: "mutatingwebhookconfigurations",
    field_labels: &[],
    strategy: &MutatingWebhookConfigurations,
};

/// The `MutatingWebhookConfiguration` strategy.
pub struct MutatingWebhookConfigurations;

impl Strategy for MutatingWebhookConfigurations {
    typed_as!(
        "v1.MutatingWebhookConfiguration",
        api::MutatingWebhookConfiguration
    );

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        validate_configuration(e, object, old, true);
    }

    /// `SetDefaults_MutatingWebhook` and the defaults of its rules and service.
    fn default(&self, object: &mut Value) {
        default_configuration(object, true);
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
        let mut invalid = sample("mutate.policy.example.com");
        invalid["webhooks"][0]["reinvocationPolicy"] = json!("Always");
        Samples {
            valid: sample("mutate.policy.example.com"),
            invalid,
            invalid_field: "webhooks[0].reinvocationPolicy",
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn causes(object: &Value) -> Vec<String> {
        RESOURCE.cause_messages(object)
    }

    #[test]
    fn served_as_kube_apiserver_serves_it() {
        let found = crate::apiserver::registry::Registry::new()
            .find_kind(
                "admissionregistration.k8s.io/v1",
                "MutatingWebhookConfiguration",
            )
            .unwrap();
        assert_eq!(found.plural, "mutatingwebhookconfigurations");
        assert!(!found.namespaced);
        assert_eq!(
            found.key(None, "policy"),
            "/registry/mutatingwebhookconfigurations/policy"
        );
        assert!(found.short_names.is_empty());
    }

    #[test]
    fn the_reinvocation_policy_defaults_to_never_and_is_checked() {
        let mut object = sample("mutate.policy.example.com");
        MutatingWebhookConfigurations.default(&mut object);
        assert_eq!(object["webhooks"][0]["reinvocationPolicy"], "Never");
        assert!(causes(&object).is_empty(), "{:?}", causes(&object));
        object["webhooks"][0]["reinvocationPolicy"] = json!("IfNeeded");
        assert!(causes(&object).is_empty());
        object["webhooks"][0]["reinvocationPolicy"] = json!("Always");
        object["webhooks"][0]["timeoutSeconds"] = json!(60);
        object["webhooks"][0]["clientConfig"] = json!({"url": "http://mutate.example.com"});
        // Upstream's order: timeout, selectors, reinvocation policy, then the client config.
        assert_eq!(
            causes(&object),
            vec![
                "webhooks[0].timeoutSeconds: Invalid value: 60: the timeout value must be between 1 and 30 seconds",
                r#"webhooks[0].reinvocationPolicy: Unsupported value: "Always": supported values: "IfNeeded", "Never""#,
                r#"webhooks[0].clientConfig.url: Invalid value: "http": 'https' is the only allowed URL scheme; desired format: https://host[/path]"#,
            ]
        );
    }

    #[test]
    fn creates_start_at_generation_one() {
        let mut object = sample("mutate.policy.example.com");
        MutatingWebhookConfigurations.prepare_named(&mut object);
        assert_eq!(object["metadata"]["generation"], 1);
    }
}
