//! The dependency graph of a stack: nodes are addresses, edges come from typed references
//! (`a` depends on `b` when `a` refers to `b`). Checks that every edge lands on a resource of
//! the stack and that there is no cycle, naming the cycle when there is one.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Address, Resource};

#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// address -> what it depends on.
    pub depends_on: BTreeMap<Address, BTreeSet<Address>>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GraphError {
    #[error("dependency cycle: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(" -> "))]
    Cycle(Vec<Address>),
    #[error("{from} refers to {to}, which is not in the stack")]
    Dangling { from: Address, to: Address },
    #[error("{0} is declared twice")]
    Duplicate(Address),
}

impl Graph {
    pub fn build(resources: &[Resource]) -> Result<Graph, GraphError> {
        let mut depends_on = BTreeMap::new();
        for r in resources {
            if depends_on
                .insert(r.address.clone(), r.depends_on.clone())
                .is_some()
            {
                return Err(GraphError::Duplicate(r.address.clone()));
            }
        }
        for (from, deps) in &depends_on {
            for to in deps {
                if !depends_on.contains_key(to) {
                    return Err(GraphError::Dangling {
                        from: from.clone(),
                        to: to.clone(),
                    });
                }
            }
        }
        let graph = Graph { depends_on };
        graph.check_acyclic()?;
        Ok(graph)
    }

    fn check_acyclic(&self) -> Result<(), GraphError> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Visiting,
            Done,
        }
        let mut marks: BTreeMap<&Address, Mark> = BTreeMap::new();
        let mut path: Vec<&Address> = Vec::new();

        fn visit<'a>(
            graph: &'a Graph,
            node: &'a Address,
            marks: &mut BTreeMap<&'a Address, Mark>,
            path: &mut Vec<&'a Address>,
        ) -> Result<(), GraphError> {
            match marks.get(node) {
                Some(Mark::Done) => return Ok(()),
                Some(Mark::Visiting) => {
                    let start = path.iter().position(|a| *a == node).unwrap_or(0);
                    let mut cycle: Vec<Address> =
                        path[start..].iter().map(|a| (*a).clone()).collect();
                    cycle.push(node.clone());
                    return Err(GraphError::Cycle(cycle));
                }
                None => {}
            }
            marks.insert(node, Mark::Visiting);
            path.push(node);
            if let Some(deps) = graph.depends_on.get(node) {
                for dep in deps {
                    visit(graph, dep, marks, path)?;
                }
            }
            path.pop();
            marks.insert(node, Mark::Done);
            Ok(())
        }

        for node in self.depends_on.keys() {
            visit(self, node, &mut marks, &mut path)?;
        }
        Ok(())
    }

    /// Addresses such that every one comes after what it depends on.
    pub fn topological(&self) -> Vec<Address> {
        let mut done: BTreeSet<&Address> = BTreeSet::new();
        let mut order = Vec::new();
        fn visit<'a>(
            graph: &'a Graph,
            node: &'a Address,
            done: &mut BTreeSet<&'a Address>,
            order: &mut Vec<Address>,
        ) {
            if !done.insert(node) {
                return;
            }
            if let Some(deps) = graph.depends_on.get(node) {
                for dep in deps {
                    visit(graph, dep, done, order);
                }
            }
            order.push(node.clone());
        }
        for node in self.depends_on.keys() {
            visit(self, node, &mut done, &mut order);
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, LogGroupSpec, Spec};

    fn res(name: &str, deps: &[&str]) -> Resource {
        Resource {
            address: Address::new(Kind::LogGroup, name),
            physical_id: name.into(),
            arn: name.into(),
            protected: false,
            depends_on: deps
                .iter()
                .map(|d| Address::new(Kind::LogGroup, *d))
                .collect(),
            spec: Spec::LogGroup(LogGroupSpec {
                name: name.into(),
                retention_days: None,
                tags: Default::default(),
            }),
            waivers: Default::default(),
        }
    }

    #[test]
    fn cycle_is_named() {
        let err =
            Graph::build(&[res("a", &["b"]), res("b", &["c"]), res("c", &["a"])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "dependency cycle: log_group.a -> log_group.b -> log_group.c -> log_group.a"
        );
    }

    #[test]
    fn topological_puts_dependencies_first() {
        let g = Graph::build(&[
            res("app", &["db", "net"]),
            res("db", &["net"]),
            res("net", &[]),
        ])
        .unwrap();
        let order: Vec<String> = g.topological().iter().map(|a| a.name.clone()).collect();
        assert_eq!(order, ["net", "db", "app"]);
    }

    #[test]
    fn dangling_reference_is_an_error() {
        let err = Graph::build(&[res("a", &["ghost"])]).unwrap_err();
        assert!(matches!(err, GraphError::Dangling { .. }));
    }
}
