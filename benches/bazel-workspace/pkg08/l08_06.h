#ifndef PKG08_L08_06_H
#define PKG08_L08_06_H
#include <string>
#include <vector>

namespace l08_06 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l08_06

#endif
