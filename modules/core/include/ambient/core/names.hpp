// The names of enumerations, written once per enumeration as a table: what command lines and files say
// ("cg-sense", "ambient-fourier"), parsed with an error that lists the choices, and named back.
#pragma once

#include <cstddef>
#include <string>

#include "ambient/core/error.hpp"

namespace ambient {

/// One row of a name table. An alias is accepted when parsing but neither listed nor given back.
template <typename E>
struct Named {
  E value;
  const char* name;
  bool alias = false;
};

/// The value named `name` in `table`; otherwise throws "what: expected a|b|c, got 'name'".
template <typename E, std::size_t N>
E parse_named(const Named<E> (&table)[N], const std::string& name, const char* what) {
  for (const auto& row : table)
    if (name == row.name) return row.value;
  std::string choices;
  for (const auto& row : table)
    if (!row.alias) choices += (choices.empty() ? "" : "|") + std::string(row.name);
  fail(what, ": expected ", choices, ", got '", name, "'");
}

/// The name of `value` in `table` (its first row that is not an alias); "?" for a value the table lacks.
template <typename E, std::size_t N>
std::string name_of(const Named<E> (&table)[N], E value) {
  for (const auto& row : table)
    if (!row.alias && row.value == value) return row.name;
  return "?";
}

}  // namespace ambient
