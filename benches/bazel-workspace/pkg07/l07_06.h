#ifndef PKG07_L07_06_H
#define PKG07_L07_06_H
#include <string>
#include <vector>

namespace l07_06 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l07_06

#endif
