#ifndef PKG08_L08_03_H
#define PKG08_L08_03_H
#include <string>
#include <vector>

namespace l08_03 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l08_03

#endif
