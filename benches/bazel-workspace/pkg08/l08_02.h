#ifndef PKG08_L08_02_H
#define PKG08_L08_02_H
#include <string>
#include <vector>

namespace l08_02 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l08_02

#endif
