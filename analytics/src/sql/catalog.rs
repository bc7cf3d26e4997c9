//! The analyst session's catalog, listed in a fixed order.
//!
//! Postgres clients find a table by its oid in one statement and describe it by that oid
//! in the next (psql's `\d t`, DBeaver's navigator). `pg_catalog` numbers tables in the
//! order the catalog lists them, and each statement runs in a session of its own; the
//! in-memory catalog lists in hash order, which differs from session to session. Listed
//! sorted, the same tables get the same oids in every session.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::Result;

#[derive(Debug)]
pub struct SortedCatalog(pub Arc<dyn CatalogProvider>);

impl CatalogProvider for SortedCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = self.0.schema_names();
        names.sort();
        names
    }
    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.0
            .schema(name)
            .map(|s| Arc::new(SortedSchema(s)) as Arc<dyn SchemaProvider>)
    }
    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        self.0.register_schema(name, schema)
    }
}

#[derive(Debug)]
struct SortedSchema(Arc<dyn SchemaProvider>);

#[async_trait]
impl SchemaProvider for SortedSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.0.table_names();
        names.sort();
        names
    }
    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        self.0.table(name).await
    }
    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        self.0.register_table(name, table)
    }
    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        self.0.deregister_table(name)
    }
    fn table_exist(&self, name: &str) -> bool {
        self.0.table_exist(name)
    }
}
