#ifndef PKG09_L09_06_H
#define PKG09_L09_06_H
#include <string>
#include <vector>

namespace l09_06 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l09_06

#endif
